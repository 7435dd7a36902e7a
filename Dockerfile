# The crowdstream worker image.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY channels ./channels
COPY pe ./pe
COPY pipelines ./pipelines
RUN pip install --no-cache-dir .
# Faust's data directory; HTTP for POST /items, /metrics, /healthz.
ENV CROWDSTREAM_DATA_DIR=/var/lib/crowdstream CROWDSTREAM_HTTP_HOST=0.0.0.0
EXPOSE 8000
ENTRYPOINT ["crowdstream"]
CMD ["up"]
