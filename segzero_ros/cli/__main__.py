import sys

from segzero_ros.cli import main

sys.exit(main())
