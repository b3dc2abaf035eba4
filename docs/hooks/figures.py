"""MkDocs hook: the committed figures under ``docs/`` join the site without a second copy.

The pages in ``docs/site/`` show figures that runs write next to their results (``docs/demo/``,
``docs/physical/``, ...). Each such PNG is added to the build under its path relative to
``docs/`` (``demo/panel.png``), so a page links it as ``![panel](demo/panel.png)``.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

DOCS = Path(__file__).resolve().parents[1]


def on_files(files, config):
    site_pages = DOCS / "site"
    for png in sorted(DOCS.rglob("*.png")):
        if site_pages in png.parents:
            continue
        rel = png.relative_to(DOCS).as_posix()
        if files.get_file_from_path(rel) is None:
            files.append(File(rel, str(DOCS), config["site_dir"], config["use_directory_urls"]))
    return files
