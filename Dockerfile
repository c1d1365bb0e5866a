# code-server on an S3-backed workspace: no FUSE, no --privileged, no capabilities,
# a non-root user. Build and run (README: "Container image"):
#
#   docker build -t code-server-s3 .
#   docker run --rm -p 8080:8080 -e S3SHIM_BUCKET=team -e S3SHIM_KEY_PREFIX=alice/ \
#     -e AWS_REGION=eu-west-1 -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#     -v s3shim-cache:/home/coder/.cache/s3shim code-server-s3
#
# The install step is scripts/install-image.sh, which the browser test runs too.

ARG CODE_SERVER_VERSION=4.139.1

# Debian 12: the preload library then needs only the glibc symbol versions a Debian 12
# base has, so it loads there and on anything newer.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace

# code-server's official image: user `coder` (uid 1000), code-server on PATH. The default
# version is the one the browser e2e test runs (scripts/e2e/install.sh); a library built
# against glibc 2.36 also loads on a newer base.
FROM codercom/code-server:${CODE_SERVER_VERSION}
USER root
COPY --from=build /src/target/release/s3shim /src/target/release/libs3shim.so /tmp/s3shim-install/
COPY scripts/install-image.sh scripts/code-server-s3 /tmp/s3shim-install/scripts/
RUN /tmp/s3shim-install/scripts/install-image.sh --from /tmp/s3shim-install --prefix /usr/local \
	&& rm -rf /tmp/s3shim-install \
	&& install -d -o coder -g coder /home/coder/.cache /home/coder/.cache/s3shim
# (The cache directory exists, owned by coder, so a volume mounted there is coder's.)
USER coder
ENV S3SHIM_MOUNT=/workspace
EXPOSE 8080
# `s3shim run` (exec'd by the wrapper) is PID 1: it forwards `docker stop`'s SIGTERM to
# code-server and exits once every change is in S3 (give it time: docker stop -t 60).
ENTRYPOINT ["/usr/local/bin/code-server-s3"]
CMD ["--bind-addr", "0.0.0.0:8080"]
