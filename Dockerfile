# The tfms operator image: pinned, non-root, no tensorflow (the operator never imports it).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements/operator.txt requirements/operator.txt
RUN pip install --no-deps -r requirements/operator.txt
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY crds/ crds/
RUN pip install --no-deps . && rm -rf /root/.cache

RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tfms
USER 10001:10001

ENTRYPOINT ["tfms"]
CMD ["--help"]
