# One image for every service of docker-compose.yml: migrate, worker, beat and flower.
# Configuration (URLs, secrets) comes from the environment at run time; none is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group app
WORKDIR /app

COPY pyproject.toml README.md celeryconfig.py flowerconfig.py alembic.ini ./
COPY client ./client
COPY worker ./worker
COPY tasks ./tasks
COPY db ./db
# A regular (not editable) install: the console script `articles` and the packages land in
# site-packages; flowerconfig.py stays in /app, the working directory Flower reads it from.
# ./var holds beat's schedule file: owned by the app user so beat can write it.
RUN pip install . && mkdir -p /app/var && chown app:app /app/var

USER app
CMD ["celery", "-A", "worker", "worker", "-l", "info"]
