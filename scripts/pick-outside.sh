#!/usr/bin/env bash
# The pick bench (benches/pick.rs) built as a user's crate builds gosd: a
# binary crate outside the workspace, gosd as a path dependency, default
# release settings (`cargo run --release`), the workspace's Cargo.lock.
#   scripts/pick-outside.sh      # honours CARGO_TARGET_DIR; else builds in a temp dir
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src"
cp "$repo/benches/pick.rs" "$dir/src/main.rs"
cp "$repo/Cargo.lock" "$dir/Cargo.lock"
cat >"$dir/Cargo.toml" <<TOML
[package]
name = "pick-outside"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
gosd = { path = "$repo" }
tokio = { version = "1.47", features = ["rt-multi-thread", "sync", "time", "macros"] }
libc = "0.2"

# Not a member of gosd's workspace.
[workspace]
TOML
cd "$dir"
cargo run --release --quiet -- --bench
