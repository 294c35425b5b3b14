#!/usr/bin/env bash
# oci-layout.sh ROOTFS OUT REF CONFIG_JSON: writes an OCI image layout in OUT with one uncompressed
# layer, the tree ROOTFS (owners kept as numbers), and CONFIG_JSON as the image's config (Env,
# Entrypoint, User, ...); the index names it REF (full name for containerd's import, tag for BuildKit).
# Prints the manifest's digest. Used for the images no registry can give here: the pause image and
# the base images of docker/Dockerfile (scripts/image.sh).
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 ROOTFS OUT REF CONFIG_JSON" >&2; exit 2; }
rootfs=$1 out=$2 ref=$3 config=$4
rm -rf "$out"
mkdir -p "$out/blobs/sha256"
blob() { # blob FILE MEDIA_TYPE: moves FILE into the store, prints its descriptor
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$out/blobs/sha256/$d"
    printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$d" "$s"
}
tar -C "$rootfs" --numeric-owner --sort=name --mtime=@0 -cf "$out/layer.tar" .
layer=$(blob "$out/layer.tar" application/vnd.oci.image.layer.v1.tar)
diff_id=$(printf '%s' "$layer" | sed 's/.*"digest":"\([^"]*\)".*/\1/')
printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created_by":"torchship scripts/image/oci-layout.sh"}]}' \
    "$config" "$diff_id" >"$out/config.json"
cfg=$(blob "$out/config.json" application/vnd.oci.image.config.v1+json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$cfg" "$layer" >"$out/manifest.json"
manifest=$(blob "$out/manifest.json" application/vnd.oci.image.manifest.v1+json)
tag=${ref##*:}
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "${manifest%\}},\"annotations\":{\"io.containerd.image.name\":\"$ref\",\"org.opencontainers.image.ref.name\":\"$tag\"}}" \
    >"$out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
printf '%s\n' "$manifest" | sed 's/.*"digest":"\([^"]*\)".*/\1/'
