#!/usr/bin/env bash
# argo-crds.sh DEST: download the upstream Argo CD and Argo Workflows CRDs that `edgeops validate manifests`
# and the manifest tests validate against, at pinned commits, and check their sha256 before anything uses
# them. Then `export EDGEOPS_CRD_SCHEMAS=DEST`. CI runs it; it works the same on any machine with curl.
# The commits and files are those of docs/development.md: bump them together, with the new digests.
set -euo pipefail

dest="${1:?usage: argo-crds.sh DEST}"
argo_cd=https://raw.githubusercontent.com/argoproj/argo-cd/37ee0097cf851bc2dd7665fc081bbce61a7e836e/manifests/crds
argo_workflows=https://raw.githubusercontent.com/argoproj/argo-workflows/f016ad89eb269d282aec06dc491c29f396a38df4/manifests/base/crds/full

mkdir -p "$dest/argo-cd" "$dest/argo-workflows"
cd "$dest"
fetch() { curl --fail --silent --show-error --location --retry 3 --output "$1" "$2"; }
for name in application applicationset appproject; do
  fetch "argo-cd/$name-crd.yaml" "$argo_cd/$name-crd.yaml"
done
for name in workflows workflowtemplates cronworkflows; do
  fetch "argo-workflows/argoproj.io_$name.yaml" "$argo_workflows/argoproj.io_$name.yaml"
done
sha256sum --strict --check --quiet <<'SUMS'
9fd0da3e7097ad6d1af614fabd5c960bc7ddb00d768c3ef485a2fda6e9460df8  argo-cd/application-crd.yaml
3dd600079b67cbb5d7b87750464914c1cc62a977cf364b8004c6875fa1fb3f0f  argo-cd/applicationset-crd.yaml
ab225266944322750136f1198d93786e4a79a0e43c8d149abfba44da30a3eac8  argo-cd/appproject-crd.yaml
31abde1c89c6c11cf1c97753676327e02b2f8dc47827e49383732ac6b1d828c6  argo-workflows/argoproj.io_cronworkflows.yaml
35ffc0d16c9c71db69ae113e562d90057eac75a60e7371aa3012a3171ccd8c39  argo-workflows/argoproj.io_workflows.yaml
e932631a04a0f3a226b2ca8c68d43214c071c5d8aa6961b23298b81cbea3d9a5  argo-workflows/argoproj.io_workflowtemplates.yaml
SUMS
echo "Argo CRDs verified in $dest"
