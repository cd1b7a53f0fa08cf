#!/usr/bin/env bash
# Start the single-cell playbook: JupyterLab (or a headless run) in the RAPIDS container, in a local
# virtual environment (--local; automatic without docker), or through Apptainer (--apptainer).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=setup/lib.sh
source "$ROOT/setup/lib.sh"

RAPIDS_VERSION=${PLAYBOOK_RAPIDS_VERSION:-26.10}
IMAGE_REPO=${PLAYBOOK_IMAGE_REPO:-nvcr.io/nvidia/rapidsai/notebooks}
MIN_DISK_GB=${PLAYBOOK_MIN_DISK_GB:-30}
MODE=auto GPU=auto HEADLESS=0 PUBLIC=0 PORT=8888 PULL=0 WHEELHOUSE="" DATA="" OUT="$ROOT/results"
PARAMS=()

usage() {
  cat <<USAGE
usage: $0 [--local | --apptainer] [--headless] [options]
  (default)          the RAPIDS container when docker, its NVIDIA runtime and a GPU are usable;
                     otherwise --local, saying why
  --docker           the RAPIDS container, and an error with the fix if docker cannot run it
  --local            no docker: a virtual environment here (Python >= 3.12); CPU unless --gpu
  --apptainer        HPC: the RAPIDS image through Apptainer/Singularity with --nv
  --headless         run the notebook end to end into results/ instead of serving JupyterLab
  --gpu | --cpu      with --local: install the GPU (rapids-singlecell) or CPU set
  --data PATH        input .h5ad / 10x .h5 / 10x folder (default: the embedded demo dataset)
  --out DIR          results folder (default: results/)
  --param KEY=VALUE  a notebook parameter (repeatable)
  --port N           first port to try (default 8888; the next free one is taken)
  --public           listen on all interfaces (the token is still required)
  --wheelhouse DIR   install offline from a folder of wheels (see setup/download_wheels.sh)
  --pull             docker/Apptainer: fetch the image again even when it is here already
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --docker) MODE=docker ;;
    --local) MODE=local ;;
    --apptainer) MODE=apptainer ;;
    --headless) HEADLESS=1 ;;
    --gpu) GPU=1 ;;
    --cpu) GPU=0 ;;
    --public) PUBLIC=1 ;;
    --pull) PULL=1 ;;
    --port) PORT=${2:?--port needs a number}; shift ;;
    --data) DATA=${2:?--data needs a path}; shift ;;
    --out) OUT=${2:?--out needs a folder}; shift ;;
    --param) PARAMS+=("--param" "${2:?--param needs KEY=VALUE}"); shift ;;
    --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a folder}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
  shift
done
case "$PORT" in '' | *[!0-9]*) die "--port $PORT is not a number" ;; esac
[ -z "$DATA" ] || [ -e "$DATA" ] || die "--data $DATA does not exist"
[ -z "$WHEELHOUSE" ] || [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE is not a folder (make one with setup/download_wheels.sh)"
mkdir -p "$OUT" || die "cannot create the results folder $OUT"
OUT=$(cd "$OUT" && pwd)

# --- preflight ----------------------------------------------------------------------------------
driver_major() { nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 | cut -d. -f1; }

cuda_major_for_driver() { # driver major -> CUDA major (RAPIDS 26.10: CUDA 13 needs >= 580, 12 >= 535)
  local d=$1
  if [ "$d" -ge 580 ]; then echo 13; elif [ "$d" -ge 535 ]; then echo 12; fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local p
  for p in $(seq "$PORT" $((PORT + 20))); do
    if port_free "$p"; then
      [ "$p" = "$PORT" ] || say "port $PORT is taken; using $p instead"
      echo "$p"; return 0
    fi
  done
  EXIT_CODE=3 die "ports $PORT-$((PORT + 20)) are all taken: free one or pass --port N"
}

free_disk_gb() { df -Pk "${1:-$HOME}" 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}'; }

new_token() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# Kernel caches live on the host, per GPU architecture and library versions, so only the first
# run on a machine compiles GPU kernels.
cache_dir() {
  local arch
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '.' || true)
  echo "$ROOT/cache/sm${arch:-none}-rapids${RAPIDS_VERSION}"
}

# --- modes --------------------------------------------------------------------------------------
run_local() {
  local venv req
  venv=${PLAYBOOK_VENV:-$ROOT/.venv}
  if [ "$GPU" = auto ]; then GPU=0; fi
  req=requirements-cpu.txt
  if [ "$GPU" = 1 ]; then
    local d cu
    d=$(driver_major) || true
    [ -n "$d" ] || die "--gpu: nvidia-smi finds no NVIDIA driver/GPU. Install the driver, or drop --gpu for the CPU."
    cu=$(cuda_major_for_driver "$d")
    [ -n "$cu" ] || die "NVIDIA driver $d is too old for RAPIDS $RAPIDS_VERSION (needs >= 535 for CUDA 12, >= 580 for CUDA 13): update the driver."
    req=requirements-gpu-cu$cu.txt
  fi
  ensure_venv "$venv" "$req" "$WHEELHOUSE"
  local cache
  cache=$(cache_dir); mkdir -p "$cache"
  export CUPY_CACHE_DIR="$cache/cupy" NUMBA_CACHE_DIR="$cache/numba" SCPLAYBOOK_DATA="${SCPLAYBOOK_DATA:-$ROOT/data/cache}" SCPLAYBOOK_RESULTS="$OUT"
  if [ "$HEADLESS" = 1 ]; then
    local args=(run --out "$OUT")
    [ -z "$DATA" ] || args+=(--data "$DATA")
    exec "$venv/bin/python" -m scplaybook "${args[@]}" "${PARAMS[@]}"
  fi
  local port ip=127.0.0.1
  port=$(pick_port)
  [ "$PUBLIC" = 0 ] || ip=0.0.0.0
  JUPYTER_TOKEN=$(new_token); export JUPYTER_TOKEN
  say "JupyterLab on $ip:$port; open: http://127.0.0.1:$port/lab/tree/scRNA_analysis_preprocessing.ipynb?token=$JUPYTER_TOKEN"
  say "results go to $OUT; stop with Ctrl-C (nothing in results/ is lost)"
  cd "$ROOT"
  # The token travels in the environment (never on a command line); its URL is printed once, above.
  local extra=() rc
  [ "$(id -u)" != 0 ] || extra+=(--allow-root)
  set +e
  "$venv/bin/python" -m jupyter lab --no-browser --ip="$ip" --port="$port" --ServerApp.port_retries=0 \
    --ServerApp.root_dir="$ROOT" "${extra[@]}" 2>&1 | grep --line-buffered -v -e 'token='
  rc=${PIPESTATUS[0]}
  set -e
  say "JupyterLab stopped (exit $rc); results are in $OUT"
  return "$rc"
}

docker_preflight() {
  local out
  if ! out=$(docker info 2>&1); then
    case "$out" in
      *"permission denied"*) die "docker is installed but you may not use it. Run: sudo usermod -aG docker \$USER, log out and in again (or use --local)." ;;
      *) die "docker does not answer ($(echo "$out" | grep -i -m1 -E "cannot|error|denied" || echo "$out" | head -n1)). Start the docker service, or use --local." ;;
    esac
  fi
  case "$out" in
    *nvidia*) ;;
    *) die "docker has no NVIDIA runtime: install the NVIDIA Container Toolkit (nvidia-ctk runtime configure --runtime=docker), or use --local for the CPU." ;;
  esac
}

gpu_image() {
  local d cu
  d=$(driver_major) || true
  [ -n "$d" ] || die "no NVIDIA GPU/driver found (nvidia-smi fails). Use --local to run on the CPU."
  cu=$(cuda_major_for_driver "$d")
  [ -n "$cu" ] || die "NVIDIA driver $d is too old for the RAPIDS $RAPIDS_VERSION images (need >= 535 for CUDA 12, >= 580 for CUDA 13): update the driver."
  echo "$IMAGE_REPO:$RAPIDS_VERSION-cuda$cu-py3.13"
}

# The folders the container writes, all on the host: results, kernel caches, downloads, and the
# requirements installed into the image once (envs/, keyed by image and requirements).
host_dirs() {
  CACHE=$(cache_dir) ENVS="$ROOT/cache/envs"
  mkdir -p "$CACHE" "$ROOT/data/cache" "$ENVS/home" || die "cannot create the cache folders under $ROOT"
}

# Dask's dashboard (port 8787 in the container) when the run starts Dask workers; JupyterLab always
# (dask_workers is set in the notebook there).
wants_dashboard() {
  [ "$HEADLESS" = 0 ] && return 0
  local p n
  for p in "${PARAMS[@]}"; do
    case "$p" in dask_workers=*) n=${p#dask_workers=}; case "$n" in '' | *[!0-9]*) ;; *) [ "$n" -gt 0 ] && return 0 ;; esac ;; esac
  done
  return 1
}

image_cuda() { echo "$1" | sed -E 's/.*-cuda([0-9]+).*/\1/'; }

run_docker() {
  docker_preflight
  local image port gb token bind=127.0.0.1
  image=$(gpu_image)
  [ "$PUBLIC" = 0 ] || bind=0.0.0.0
  if [ "$PULL" = 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
    gb=$(free_disk_gb "$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)")
    [ -z "$gb" ] || [ "$gb" -ge "$MIN_DISK_GB" ] || die "only ${gb} GB free for docker images; the RAPIDS image needs about ${MIN_DISK_GB} GB. Free disk space."
    say "pulling $image (a few GB; once: later starts use the local copy, --pull fetches it again) ..."
    docker pull "$image" >&2 || die "docker pull $image failed (network? a proxy needs docker's own proxy settings)"
  fi
  host_dirs
  # The image's user (rapids, uid 1001) cannot write the host user's folders. Run as the host user, with
  # the image's conda group (owner of /opt/conda, mode 0770), so everything written stays the user's own
  # and nothing is made world-writable. Rootless docker already maps the container's root to the user.
  local user=(--user "$(id -u):$(id -g)" --group-add conda)
  if docker info --format '{{.SecurityOptions}}' 2>/dev/null | grep -q rootless; then user=(--user 0:0); fi
  local common=(--rm --gpus all --shm-size=1g --ulimit memlock=-1 --ulimit stack=67108864 "${user[@]}"
    -v "$ROOT:/home/rapids/playbook:ro" -v "$OUT:/home/rapids/results" -v "$CACHE:/home/rapids/cache"
    -v "$ROOT/data/cache:/home/rapids/data" -v "$ENVS:/home/rapids/envs"
    -e HOME=/home/rapids/envs/home -e "PLAYBOOK_IMAGE=$image" -e "PLAYBOOK_CUDA=$(image_cuda "$image")"
    -e CUPY_CACHE_DIR=/home/rapids/cache/cupy -e NUMBA_CACHE_DIR=/home/rapids/cache/numba
    -e SCPLAYBOOK_DATA=/home/rapids/data -e "PLAYBOOK_WHEELHOUSE=${WHEELHOUSE:+/home/rapids/wheels}")
  [ -z "$WHEELHOUSE" ] || common+=(-v "$(cd "$WHEELHOUSE" && pwd):/home/rapids/wheels:ro")
  if wants_dashboard; then
    local dash
    dash=$(PORT=8787 pick_port)
    common+=(-p "$bind:$dash:8787" -e "DASK_DISTRIBUTED__DASHBOARD__LINK=http://127.0.0.1:$dash/status")
    say "Dask dashboard (once the notebook starts Dask workers): http://127.0.0.1:$dash/status"
  fi
  if [ "$HEADLESS" = 1 ]; then
    local args=()
    [ -z "$DATA" ] || { common+=(-v "$(cd "$(dirname "$DATA")" && pwd):/home/rapids/input:ro"); args+=(--data "/home/rapids/input/$(basename "$DATA")"); }
    exec docker run "${common[@]}" "$image" bash /home/rapids/playbook/setup/setup_playbook.sh --headless "${args[@]}" "${PARAMS[@]}"
  fi
  port=$(pick_port)
  token=$(new_token); export JUPYTER_TOKEN=$token
  say "open: http://127.0.0.1:$port/lab/tree/scRNA_analysis_preprocessing.ipynb?token=$token"
  say "results are kept in $OUT on this machine; stop with Ctrl-C"
  exec docker run -it "${common[@]}" -p "$bind:$port:8888" -e JUPYTER_TOKEN "$image" \
    bash /home/rapids/playbook/setup/setup_playbook.sh
}

# Apptainer runs the image as the calling user, who cannot read /opt/conda (root:conda, 0770:
# rapidsai/docker issue 669). So the image is built once into a local SIF whose /opt/conda and
# /home/rapids are readable by everyone (nothing in it is writable); a site-provided SIF can be named
# with PLAYBOOK_APPTAINER_IMAGE.
apptainer_image() {
  local tool=$1 image=$2 sif def
  sif=${PLAYBOOK_APPTAINER_IMAGE:-${PLAYBOOK_APPTAINER_CACHE:-$ROOT/cache/apptainer}/$(printf '%s' "${image##*/}" | tr ':' '-').sif}
  if [ -f "$sif" ] && [ "$PULL" = 0 ]; then echo "$sif"; return 0; fi
  [ -z "${PLAYBOOK_APPTAINER_IMAGE:-}" ] || die "PLAYBOOK_APPTAINER_IMAGE=$sif does not exist"
  mkdir -p "$(dirname "$sif")"
  def="$(dirname "$sif")/build.def"
  printf 'Bootstrap: docker\nFrom: %s\n\n%%post\n    chmod -R o+rX /opt/conda /home/rapids\n' "$image" > "$def"
  say "building $sif from $image (once; a few GB) ..."
  "$tool" build --fakeroot --force "$sif.part" "$def" >&2 \
    || die "could not build $sif (needs --fakeroot, i.e. user namespaces; ask your admins, or build it where you can: $tool build $sif $def, then PLAYBOOK_APPTAINER_IMAGE=$sif)"
  mv "$sif.part" "$sif"
  echo "$sif"
}

run_apptainer() {
  local tool image sif ip=127.0.0.1
  tool=$(command -v apptainer || command -v singularity) || die "neither apptainer nor singularity is on PATH: load its module (module load apptainer) or use --local."
  image=$(gpu_image)
  sif=$(apptainer_image "$tool" "$image")
  host_dirs
  [ "$PUBLIC" = 0 ] || ip=0.0.0.0
  local common=(--nv --cleanenv --bind "$ROOT:/home/rapids/playbook:ro" --bind "$OUT:/home/rapids/results"
    --bind "$CACHE:/home/rapids/cache" --bind "$ROOT/data/cache:/home/rapids/data" --bind "$ENVS:/home/rapids/envs"
    --env "PLAYBOOK_IMAGE=$image" --env "PLAYBOOK_CUDA=$(image_cuda "$image")"
    --env CUPY_CACHE_DIR=/home/rapids/cache/cupy --env NUMBA_CACHE_DIR=/home/rapids/cache/numba
    --env SCPLAYBOOK_DATA=/home/rapids/data --env "PLAYBOOK_IP=$ip")
  [ -z "$WHEELHOUSE" ] || common+=(--bind "$(cd "$WHEELHOUSE" && pwd):/home/rapids/wheels:ro" --env PLAYBOOK_WHEELHOUSE=/home/rapids/wheels)
  if [ "$HEADLESS" = 1 ]; then
    local args=()
    [ -z "$DATA" ] || { common+=(--bind "$(cd "$(dirname "$DATA")" && pwd):/home/rapids/input:ro"); args+=(--data "/home/rapids/input/$(basename "$DATA")"); }
    exec "$tool" exec "${common[@]}" "$sif" bash /home/rapids/playbook/setup/setup_playbook.sh --headless "${args[@]}" "${PARAMS[@]}"
  fi
  local port
  port=$(pick_port)
  JUPYTER_TOKEN=$(new_token); export JUPYTER_TOKEN APPTAINERENV_JUPYTER_TOKEN=$JUPYTER_TOKEN
  say "JupyterLab on $ip:$port of this node; from your computer: ssh -L $port:127.0.0.1:$port $(hostname), then open"
  say "  http://127.0.0.1:$port/lab/tree/scRNA_analysis_preprocessing.ipynb?token=$JUPYTER_TOKEN"
  exec "$tool" exec "${common[@]}" --env "PLAYBOOK_PORT=$port" "$sif" \
    bash /home/rapids/playbook/setup/setup_playbook.sh
}

if [ "$MODE" = auto ]; then
  if ! command -v docker >/dev/null 2>&1; then
    say "docker was not found: running in a local virtual environment instead (--local)."
    MODE=local
  elif ! why=$( (docker_preflight && gpu_image >/dev/null) 2>&1); then
    say "the RAPIDS container cannot run here: ${why#error: }"
    say "running in a local virtual environment instead (--local; add --gpu for rapids-singlecell, --docker to insist)."
    MODE=local
  else
    MODE=docker
  fi
fi
case "$MODE" in
  docker) run_docker ;;
  local) run_local ;;
  apptainer) run_apptainer ;;
esac
