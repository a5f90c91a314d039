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
