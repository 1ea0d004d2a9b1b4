"""Write docs/vega/dvc_plots.html: the page `dvc plots show` fills, with Vega, Vega-Lite and vega-embed
inlined, so the plots draw with no network (DVC's own page loads them from a CDN: blank offline).
.dvc/config names it (`plots.html_template`). Only to update the libraries; the output is committed:

    cd /tmp && npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
    python scripts/build_plots_template.py /tmp/vega-5.33.1.tgz /tmp/vega-lite-5.23.0.tgz /tmp/vega-embed-6.29.0.tgz

The three are BSD-3-Clause; docs/vega/LICENSES.md carries their notices (update it with the versions).
"""
from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "vega" / "dvc_plots.html"
# Load order matters: vega-embed needs vega and vega-lite as globals.
PACKAGES = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js", "vega-embed": "build/vega-embed.min.js"}
# DVC replaces these in the template; DVC's own CDN scripts go where "{scripts}" is, so it is left out.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- {versions}: inlined (BSD-3-Clause, docs/vega/LICENSES.md) so that this page needs no network.
         Written by scripts/build_plots_template.py; .dvc/config names it as DVC's plots template. -->
{libraries}
    <style>
        body { font-family: sans-serif; display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main(tarballs: list[str]) -> None:
    found: dict[str, tuple[str, str, str]] = {}
    for tgz in tarballs:
        with tarfile.open(tgz) as tar:
            meta = json.load(tar.extractfile("package/package.json"))
            name = meta["name"]
            if name not in PACKAGES:
                sys.exit(f"{tgz}: {name} is not one of {', '.join(PACKAGES)}")
            if meta.get("license") != "BSD-3-Clause":
                sys.exit(f"{tgz}: license {meta.get('license')!r}, not BSD-3-Clause: check before shipping it")
            code = tar.extractfile(f"package/{PACKAGES[name]}").read().decode("utf-8")
        # The source map is not shipped: a browser's developer tools would look for it in vain.
        code = "\n".join(line for line in code.splitlines() if not line.startswith("//# sourceMappingURL="))
        if "</script" in code.lower() or any(p in code for p in PLACEHOLDERS):
            sys.exit(f"{tgz}: the code contains '</script' or a DVC placeholder; it cannot be inlined as is")
        found[name] = (meta["version"], hashlib.sha256(Path(tgz).read_bytes()).hexdigest(), code)
    missing = [n for n in PACKAGES if n not in found]
    if missing:
        sys.exit("missing: " + ", ".join(missing))
    versions = ", ".join(f"{n} {found[n][0]}" for n in PACKAGES)
    libraries = "\n".join(f"    <!-- {n} {found[n][0]}, npm tarball sha256 {found[n][1]} -->\n"
                          f"    <script>{found[n][2].strip()}</script>" for n in PACKAGES)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # str.replace, not format: the CSS braces and DVC's placeholders stay as they are.
    OUT.write_text(PAGE.replace("{versions}", versions).replace("{libraries}", libraries), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB): {versions}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1:])
