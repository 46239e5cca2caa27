# The digit service of chapter 11 in a container (CPU).
#
#   docker build -t diffedu-serve .
#   docker run --rm -p 8000:8000 diffedu-serve          then http://localhost:8000
#
# The command it runs is the one the tests start (tests/test_deploy.py checks that they agree):
# python -m diffedu serve, here on 0.0.0.0 so that the port can be published. One worker per
# container; scale out with more containers behind a load balancer (chapter 11, section 6).
# A CUDA variant: start FROM an image with CUDA (e.g. pytorch/pytorch:*-cuda*-runtime) and leave out
# the CPU-only index below; the service runs mnist-fast on the GPU with no other change.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DIFFEDU_DATA=/course/data
WORKDIR /course

# PyTorch first, CPU build (much smaller than the default CUDA one), then the course's tested versions.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY requirements-lock.txt ./
RUN pip install -r requirements-lock.txt
COPY pyproject.toml README.md ./
COPY diffedu ./diffedu
COPY data ./data
RUN pip install --no-deps .

# Not root inside the container.
RUN useradd --create-home course && chown -R course /course
USER course

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["python", "-m", "diffedu", "serve", "--port", "8000", "--host", "0.0.0.0"]
