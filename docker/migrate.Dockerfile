# syntax=docker/dockerfile:1
#
# The migration image: libs/waddlebot + every app folder, running `waddlebot migrate` once
# (DESIGN §4). It needs all apps because the step creates the core tables and each app's
# own tables (`define_tables` in <app>/models.py); an image holding one app would skip the
# tables of the others. Same base, user and pins as docker/app.Dockerfile.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 waddlebot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin waddlebot

WORKDIR /srv/build
COPY pyproject.toml constraints.txt ./
COPY libs/ ./libs/
RUN pip install -c constraints.txt . && rm -rf /srv/build

WORKDIR /srv/apps
COPY __init__.py ./__init__.py
COPY router_module/ ./router_module/
COPY marketplace_module/ ./marketplace_module/
COPY portal_module/ ./portal_module/
COPY labels_core_module/ ./labels_core_module/
COPY kong_admin_broker/ ./kong_admin_broker/
COPY twitch_module/ ./twitch_module/
COPY discord_module/ ./discord_module/
COPY slack_module/ ./slack_module/
COPY ai_interaction_module/ ./ai_interaction_module/
COPY alias_interaction_module/ ./alias_interaction_module/
COPY shoutout_interaction_module/ ./shoutout_interaction_module/
RUN python -m compileall -q /srv/apps

ENV WADDLEBOT_APPS_FOLDER=/srv/apps \
    WADDLEBOT_DATA_DIR=/tmp/waddlebot

USER 10001:10001

CMD ["waddlebot", "migrate"]
