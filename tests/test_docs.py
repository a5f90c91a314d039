"""Every `§N` the code cites names a section of docs/algorithm.md, in the clone itself."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("insid3", "export", "engine", "kernels", "benchmarks", "evaluation")


def cited_sections() -> dict[str, set[str]]:
    cited: dict[str, set[str]] = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for number in re.findall(r"§(\d+)", path.read_text()):
                cited.setdefault(number, set()).add(str(path.relative_to(ROOT)))
    return cited


def test_every_cited_section_exists_in_docs_algorithm():
    headings = set(re.findall(r"^## §(\d+) ", (ROOT / "docs" / "algorithm.md").read_text(), re.M))
    cited = cited_sections()
    assert len(cited) >= 9, f"expected the code to cite §1-§9, found {sorted(cited)}"
    missing = {number: sorted(files) for number, files in cited.items() if number not in headings}
    assert not missing, f"sections cited but absent from docs/algorithm.md: {missing}"


def test_no_source_points_outside_the_repository():
    outside = [
        str(path.relative_to(ROOT))
        for folder in SOURCES
        for path in (ROOT / folder).rglob("*.py")
        if "shared/docs" in path.read_text()
    ]
    assert not outside, f"these files cite documents outside the clone: {outside}"


MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "GPU.md"]


def test_every_relative_link_of_the_readme_and_docs_points_at_a_file():
    broken = []
    for page in MARKDOWN:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def readme_commands() -> list[list[str]]:
    """The `insid3 ...` lines of the README's shell blocks, continuation lines joined, comments cut."""
    import shlex

    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "insid3":
                commands.append(words[1:])
    return commands


def test_every_command_of_the_readme_parses_with_its_verbs_flags():
    """The front page's examples are real: each names a verb and only flags that verb accepts."""
    from insid3.engine.cli.arguments import new_parser
    from insid3.engine.cli.main import VERBS
    from insid3.engine.cli.runner import load_verb

    commands = readme_commands()
    assert {argv[0] for argv in commands} >= {"export", "calibrate", "segment", "match", "serve", "eval", "bench"}
    for argv in commands:
        entry = VERBS[argv[0]]
        verb = load_verb(entry.target)
        parser = new_parser(f"insid3 {argv[0]}", None, None)
        verb.configure(parser)
        parser.exit_on_error = False
        parsed, unknown = parser.parse_known_args(argv[1:])
        assert not unknown, f"insid3 {' '.join(argv)}: unknown {unknown}"
