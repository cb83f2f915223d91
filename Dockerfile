# haraqa on Django, run like haraqa's own image:
#   docker build -t haraqa-django .
#   docker run -p 4353:4353 -v "$PWD/vol1:/vol1" haraqa-django /vol1
# Arguments are `manage.py serve` arguments: volumes, then flags (--workers, --no-cors, ...).
# tests/packaging/test_dockerfile.py lints this file and runs its steps, so keep them plain.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HARAQA_BIND=0.0.0.0 \
    HARAQA_PORT=4353 \
    HARAQA_DATA_DIR=/data \
    HARAQA_STATIC_ROOT=/app/staticfiles

WORKDIR /app

# Runtime packages only: requirements.txt lists the test tools after its "# Tests" line.
COPY requirements.txt .
RUN sed '/^# Tests/,$d' requirements.txt > requirements-runtime.txt \
    && pip install --no-cache-dir -r requirements-runtime.txt

COPY . .
# The secret key is made at first start in /data, never baked into the image.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --system --uid 10001 --no-create-home --home-dir /data haraqa \
    && mkdir -p /data /vol1 \
    && chown haraqa /data /vol1

USER 10001
EXPOSE 4353
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/topics' % os.environ.get('HARAQA_PORT', '4353'), timeout=4)"]
ENTRYPOINT ["python", "manage.py", "serve"]
CMD ["/vol1"]
