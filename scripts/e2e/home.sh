# Sourced: sets E2E_HOME, where the tools of the tests and of the quick start are
# installed (node 24, npm 10, code-server, playwright-core, moto's venv), unless it is set.
# As root it is /opt/s3shim-e2e: the browser test runs code-server as an unprivileged
# user (nobody), who must be able to read it wherever the checkout is (/root is 0700).
# Otherwise <repo>/.e2e (git-ignored).
if [[ -z ${E2E_HOME:-} ]]; then
	if [[ $(id -u) -eq 0 ]]; then
		E2E_HOME=/opt/s3shim-e2e
	else
		E2E_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.e2e
	fi
fi
export E2E_HOME
