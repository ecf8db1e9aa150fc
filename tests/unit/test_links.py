"""Every relative link in the repository's Markdown and YAML files points at a file that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
# In YAML files, comments that point a reader at a document (``See docs/configuration.md``).
YAML_REFERENCE = re.compile(r"(?<![\w/.$-])((?:\.\./|\./)?(?:[\w-]+/)*[\w.-]+\.md)\b")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def resolves(source: Path, target: str) -> bool:
    target = target.split("#", 1)[0]
    if not target:
        return True  # an anchor in the same file
    return (source.parent / target).exists() or (ROOT / target).exists()


def test_markdown_links_resolve():
    broken = []
    for path in tracked("*.md"):
        text = path.read_text()
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks are not links
        for match in MARKDOWN_LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("<", "{")):
                continue  # http:, https:, mailto:, templated
            if not resolves(path, target):
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_yaml_files_name_documents_that_exist():
    broken = []
    for path in tracked("*.yaml", "*.yml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            comment = re.search(r"(?:^|\s)#(.*)$", line)
            for match in YAML_REFERENCE.finditer(comment.group(1) if comment else ""):
                if not resolves(path, match.group(1)):
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {match.group(1)}")
    assert not broken, "references to files that do not exist:\n" + "\n".join(broken)


def test_the_link_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[there](missing.md) and [here](page.md)")
    found = [m.group(1) for m in MARKDOWN_LINK.finditer(page.read_text())]
    assert [t for t in found if not resolves(page, t)] == ["missing.md"]
    assert YAML_REFERENCE.findall("# see docs/configuration.md for more") == ["docs/configuration.md"]
