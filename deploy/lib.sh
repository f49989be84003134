# Shared by the throwaway-server scripts (deploy/*/start.sh and stop.sh); sourced, not run.

# run_dir_args OPTION HELP_LAST_LINE ENV_VAR DEFAULT_NAME ARGS...
#   Parses the scripts' common command line "[--OPTION] [RUN_DIR]" and -h/--help (prints lines 2..HELP_LAST_LINE of
#   the calling script, its header comment). Sets FLAG (1 when --OPTION was given, else 0) and RUN_DIR (the argument,
#   else the value of ENV_VAR, else ${TMPDIR:-/tmp}/DEFAULT_NAME-<uid>).
run_dir_args() {
    local option="$1" help_last="$2" env_var="$3" default_name="$4" arg
    shift 4
    FLAG=0
    RUN_DIR=""
    for arg in "$@"; do
        case "$arg" in
        "--$option") FLAG=1 ;;
        -h | --help) sed -n "2,${help_last}p" "$0"; exit 0 ;;
        -*) echo "$(basename "$0"): unknown option $arg (valid: --$option, RUN_DIR)" >&2; exit 2 ;;
        *) RUN_DIR="$arg" ;;
        esac
    done
    RUN_DIR="${RUN_DIR:-${!env_var:-${TMPDIR:-/tmp}/$default_name-$(id -u)}}"
}
