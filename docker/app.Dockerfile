# syntax=docker/dockerfile:1
#
# The one image pattern of the WaddleBot fleet: libs/waddlebot + exactly one py4web app,
# served by gunicorn on port 8000 as uid 10001. Every app folder's Dockerfile is this
# file with the two ARG defaults filled in (tests/deploy checks they do not drift), so
# `docker build -f <app>/Dockerfile .` works from the repository root without --build-arg.
#
# No secret is baked in: DATABASE_URL, REDIS_PASSWORD, WADDLEBOT_API_KEYS ... come from the
# environment at run time (compose .env, Kubernetes Secrets). Migrations do not run here:
# `waddlebot migrate` is its own one-shot step (docker/migrate.Dockerfile).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 waddlebot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin waddlebot

# The shared package and its pinned dependencies (the same layers in every app image);
# the build folder is dropped afterwards.
WORKDIR /srv/build
COPY pyproject.toml constraints.txt ./
COPY libs/ ./libs/
RUN pip install -c constraints.txt . && rm -rf /srv/build

# The py4web app folder to serve and its open health path (DESIGN §3).
ARG APP
ARG HEALTH_PATH
RUN test -n "${APP}" && test -n "${HEALTH_PATH}" \
    || { echo "build with --build-arg APP=<app folder> --build-arg HEALTH_PATH=<path>" >&2; exit 1; }

# The apps folder: py4web's empty top-level __init__.py and this one app, owned by root
# and compiled at build time (the root filesystem is read-only when it runs).
WORKDIR /srv/apps
COPY __init__.py ./__init__.py
COPY ${APP}/ ./${APP}/
RUN test -f "${APP}/wsgi.py" && python -m compileall -q /srv/apps

ENV WADDLEBOT_APP=${APP} \
    WADDLEBOT_APPS_FOLDER=/srv/apps \
    WADDLEBOT_HEALTH_PATH=${HEALTH_PATH} \
    WADDLEBOT_MIGRATE=false \
    WADDLEBOT_DATA_DIR=/tmp/waddlebot \
    GUNICORN_WORKER_CLASS=gthread \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=8

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:8000' + os.environ['WADDLEBOT_HEALTH_PATH'], timeout=4)"]

# wsgi.py is imported as a top-level module from the app's own folder (see its
# docstring): importing `<app>.wsgi` would load the app package outside py4web.
CMD ["sh", "-c", "exec gunicorn --worker-class ${GUNICORN_WORKER_CLASS:-gthread} --workers ${GUNICORN_WORKERS:-2} --threads ${GUNICORN_THREADS:-8} --bind 0.0.0.0:8000 --chdir /srv/apps --pythonpath /srv/apps/${WADDLEBOT_APP} --no-control-socket --access-logfile - --error-logfile - wsgi:application"]
