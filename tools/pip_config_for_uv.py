"""Prints the shell `export` lines that give uv the package sources pip uses.

The installers (`tools/setup_env.sh`, `tools/setup_tfdv_env.sh`) install
with uv, which does not read pip's configuration (`pip.conf`, `PIP_*`
variables). A machine or user that points pip at a private index, local
wheels, a constraints file or a certificate would otherwise see uv ignore
them. This script reads pip's effective configuration (`python -m pip
config list`, with the interpreter that runs it) and prints, for each
setting pip has and uv has not been given already, the uv variable that
means the same:

| pip | uv |
|---|---|
| `index-url` | `UV_DEFAULT_INDEX` |
| `extra-index-url` | `UV_INDEX`, and `UV_INDEX_STRATEGY=unsafe-best-match` (pip takes the best version across all indexes) |
| `find-links` | `UV_FIND_LINKS` |
| `constraint` | `UV_CONSTRAINT` |
| `no-index` | `UV_NO_INDEX` |
| `trusted-host` | `UV_INSECURE_HOST` |
| `cert`, `client-cert` | `SSL_CERT_FILE`, `SSL_CLIENT_CERT` |

Like pip, an environment variable (`PIP_INDEX_URL`) wins over the
`[install]` section, which wins over `[global]`. Local index or
find-links locations that do not exist are left out (pip warns and skips
them; uv would stop). A `UV_*` variable already set is never changed.

Usage (in bash): `eval "$(.venv/bin/python tools/pip_config_for_uv.py)"`
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
from urllib.parse import unquote
from urllib.parse import urlparse

# pip setting -> (uv variable, separator of its list, or None for one value)
UV_EQUIVALENTS = {
    "index-url": ("UV_DEFAULT_INDEX", None),
    "extra-index-url": ("UV_INDEX", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "no-index": ("UV_NO_INDEX", None),
    "trusted-host": ("UV_INSECURE_HOST", " "),
    "cert": ("SSL_CERT_FILE", None),
    "client-cert": ("SSL_CLIENT_CERT", None),
}
# Where pip looks for packages: local ones that are missing are skipped.
LOCATIONS = ("index-url", "extra-index-url", "find-links")
_LINE = re.compile(r"^(?P<section>[^.]*)\.(?P<key>[a-z0-9-]+)=(?P<value>.*)$")
_TRUE = ("1", "true", "yes", "on")


def parse_pip_config_list(text):
    """`{key: value}` from `pip config list` output, pip's precedence applied.

    Lines read `section.key='value'`; the section is `global`, `install`
    or `:env:` (a `PIP_*` variable). The environment wins over `install`,
    which wins over `global`; other sections (other pip commands) are
    ignored.
    """
    rank = {"global": 0, "install": 1, ":env:": 2}
    settings = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match or match["section"] not in rank:
            continue
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        key, level = match["key"], rank[match["section"]]
        if key not in settings or settings[key][0] <= level:
            settings[key] = (level, value)
    return {key: value for key, (_, value) in settings.items()}


def _reachable(location):
    """False for a local location (a path or `file://` URL) that is missing."""
    if "://" not in location:
        return os.path.exists(location)
    parsed = urlparse(location)
    return parsed.scheme != "file" or os.path.exists(unquote(parsed.path))


def uv_environment(pip_settings, environ):
    """`{variable: value}` to export so that uv uses pip's sources.

    Args:
        pip_settings: `{pip key: value}` (`parse_pip_config_list`).
        environ: the current environment; variables already set in it are
            left alone.
    """
    exports = {}
    for key, (variable, separator) in UV_EQUIVALENTS.items():
        value = pip_settings.get(key, "").strip()
        if not value or variable in environ:
            continue
        if key == "no-index":
            if value.lower() in _TRUE:
                exports[variable] = "1"
            continue
        items = value.split() if separator else [value]
        if key in LOCATIONS:
            items = [item for item in items if _reachable(item)]
        if items:
            exports[variable] = (separator or "").join(items)
    if "UV_INDEX" in exports and "UV_INDEX_STRATEGY" not in environ:
        exports["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    return exports


def main():
    argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Usage in bash: eval \"$(python tools/pip_config_for_uv.py)\"",
    ).parse_args()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        sys.exit(f"pip_config_for_uv: `{sys.executable} -m pip config list` "
                 f"failed:\n{result.stderr}")
    exports = uv_environment(parse_pip_config_list(result.stdout), os.environ)
    for variable, value in exports.items():
        print(f"export {variable}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
