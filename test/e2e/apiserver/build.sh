#!/bin/sh
# Builds kube-apiserver v1.37.2 from this module once per machine and prints
# the binary's path. The binary is cached outside the repository, named by a
# hash of this module's go.mod, go.sum and main.go: only the first run on a
# machine pays the build (about 7 minutes on 2 idle cores); a change of any
# of those files builds a new one. AUDIT_SHIPPER_E2E_CACHE moves the cache.
set -eu
cd "$(dirname "$0")"
key=$(cat go.mod go.sum main.go | sha256sum | cut -c1-16)
dir=${AUDIT_SHIPPER_E2E_CACHE:-$(dirname "$(go env GOCACHE)")/audit-shipper-e2e}
bin=$dir/kube-apiserver-v1.37.2-$key
if [ ! -x "$bin" ]; then
	mkdir -p "$dir"
	echo "building $bin (first run on this machine: several minutes)" >&2
	v=k8s.io/component-base/version
	go build -trimpath -o "$bin.tmp.$$" \
		-ldflags "-s -w -X $v.gitVersion=v1.37.2 -X $v.gitMajor=1 -X $v.gitMinor=37 -X $v.gitTreeState=clean" .
	mv "$bin.tmp.$$" "$bin"
fi
echo "$bin"
