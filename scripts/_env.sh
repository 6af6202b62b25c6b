# Shared setup for scripts/demo and scripts/test: make .venv on first use and
# install fastem into it (editable) with the requested extras.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
ensure_env() {
    local extras="${1:-}"
    if [ ! -x "$PY" ]; then
        echo ">> creating $VENV" >&2
        python3 -m venv "$VENV"
        "$PY" -m pip install --quiet --upgrade pip
    fi
    local spec="$ROOT"
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    local stamp="$VENV/.fastem-installed-$extras"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo ">> installing fastem${extras:+[$extras]} into $VENV" >&2
        "$PY" -m pip install --quiet -e "$spec"
        touch "$stamp"
    fi
}
