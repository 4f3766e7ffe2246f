from segzero_ros.core.prompt import EXAMPLE_ANSWER, build_prompt, normalize_command

# Written out by hand from SEGZERO.md, not built from the module's template, so a typo in either shows up.
EXPECTED_MUG = (
    "Please find 'the red mug' with bbox and points.Compare the difference between objects and find the most "
    "closely matched one.Output the thinking process in <think> </think> and final answer in <answer> </answer> "
    "tags.Output the one bbox and points of two largest inscribed circles inside the interested object in JSON "
    "format.i.e., <think> thinking process here </think><answer>{'bbox': [10,100,200,210], 'points_1': [30,110], "
    "'points_2': [35,180]}</answer>"
)


def test_prompt_is_byte_exact():
    assert build_prompt("The red mug.") == EXPECTED_MUG


def test_question_is_lower_cased_and_periods_stripped_like_the_reference():
    assert normalize_command("The Thing I can cut bread with...") == "the thing i can cut bread with"
    # The reference calls str.strip("."), which strips leading periods too; inner ones stay.
    assert normalize_command(".e.g. a knife.") == "e.g. a knife"
    # Whitespace is not stripped by the reference either.
    assert normalize_command(" Cup ") == " cup "


def test_braces_and_placeholders_in_the_question_are_not_interpreted():
    prompt = build_prompt("{Answer} {0} {Question}")
    assert "Please find '{answer} {0} {question}' with bbox" in prompt
    assert prompt.endswith(f"<answer>{EXAMPLE_ANSWER}</answer>")
