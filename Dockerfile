# The dashboard as a container image (Render, Fly.io, Railway, Cloud Run, Kubernetes, docker run).
# The store lives on the volume at /data: mount a persistent disk there, or every paid annotation is
# lost with the container. Secrets (PREFDISSECT_LLM_API_KEY, passwords, PREFDISSECT_COOKIE_SECRET)
# come from the platform's environment, never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFDISSECT_STORE=/data/store.db \
    PORT=8501

WORKDIR /app

# the runtime requirements only (no test tools); their own layer, so a code change reuses it. The
# packages' own test suites (about 140 MB) are not needed to run and are removed.
COPY requirements.txt .
RUN python -m venv /venv && /venv/bin/pip install -r requirements.txt \
    && find /venv -type d -name tests -prune -exec rm -rf {} +
ENV PATH=/venv/bin:$PATH

COPY .streamlit ./.streamlit
COPY core ./core
COPY dashboard ./dashboard
COPY pages ./pages

# a user without privileges owns the store's folder and nothing else
RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app:app /data
USER app
VOLUME ["/data"]

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_stcore/health' % os.environ.get('PORT', '8501'), timeout=4)"

# the preflight refuses (one line, exit 2) a store it cannot write; PORT is the platform's
CMD ["sh", "-c", "python -m core preflight && exec streamlit run dashboard/app.py --server.port ${PORT} --server.address 0.0.0.0 --server.headless true"]
