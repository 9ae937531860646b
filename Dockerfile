# One image for every service in docker-compose.yml: each runs `inference-broker <command>`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY workers ./workers
COPY schedulers ./schedulers
RUN pip install '.[postgres]' \
    && useradd --system --home-dir /app broker \
    && chown broker /app
USER broker

ENTRYPOINT ["inference-broker"]
CMD ["--help"]
