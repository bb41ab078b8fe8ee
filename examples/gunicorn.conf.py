"""gunicorn settings for the examples, from the repository's root::

    gunicorn -c examples/gunicorn.conf.py examples.flask_app:app

Options given on the command line (``--bind``, ``--workers`` ...) win over
this file.
"""

import os

bind = "127.0.0.1:8000"

# Two worker processes.  Every process has its own memory, so MemoryStore
# would give each worker different sessions: use a store the workers share
# (a SQLite file, PostgreSQL, MySQL, Redis) or the cookie store.  The example
# apps read the store's URL from WSGISESSION_STORE; this sets it for the
# workers unless it is set already.  The cookie store's secret,
# WSGISESSION_SECRET_KEY, must be the same in every worker: set it in the
# environment (without it the examples sign with a public development
# secret, the same in every process, and log a warning).
workers = 2
raw_env = ["WSGISESSION_STORE=" + os.environ.get("WSGISESSION_STORE", "sqlite:///sessions.sqlite3")]

# "sync" serves one request per process at a time; "gthread" with threads = 4
# serves several per process, which wsgisession supports (sessions and stores
# are thread-safe).  With lock=True on the middleware, a request waiting for
# its session's lock holds its worker (or thread) while it waits.
worker_class = "sync"
threads = 1

# Behind a TLS-terminating proxy (nginx, a load balancer) on this machine:
# trust its X-Forwarded-Proto from these addresses only.  gunicorn then sets
# wsgi.url_scheme to "https", so cookie_options={"secure": "auto"} (Flask:
# SESSION_COOKIE_SECURE = "auto") marks the session cookie Secure.  The proxy
# must overwrite the header clients send.
forwarded_allow_ips = "127.0.0.1,::1"

timeout = 30
graceful_timeout = 10
