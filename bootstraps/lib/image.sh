# shellcheck shell=sh
# Image-based systems: a root tarball fetched from OS_IMAGE_URL, checked against OS_IMAGE_SHA256
# before anything is unpacked, and kept under GITVPS_CACHE/images by its checksum.

# fetch URL DEST: copies a file:// URL or a path, or downloads http(s) with curl or wget.
# A relative URL is taken under GITVPS_MIRROR.
fetch() {
    case "$1" in
        file://*) cp "${1#file://}" "$2" ;;
        /*) cp "$1" "$2" ;;
        http://* | https://*)
            use_proxy
            if command -v curl >/dev/null 2>&1; then
                curl -fsSL --retry 3 -o "$2" "$1"
            elif command -v wget >/dev/null 2>&1; then
                wget -q -O "$2" "$1"
            else
                die "$EX_UNAVAILABLE" "neither curl nor wget is installed on this node to download $1"
            fi
            ;;
        *)
            need GITVPS_MIRROR
            check_var GITVPS_MIRROR "$URL_RE" "a mirror URL"
            fetch "${GITVPS_MIRROR%/}/$1" "$2"
            ;;
    esac
}

# sha256_of FILE
sha256_of() {
    sha256sum <"$1" | cut -c1-64
}

# image_install: fetches (or finds in the cache), verifies, then unpacks the root tarball.
image_install() {
    check_target
    check_target_empty
    need OS_IMAGE_URL OS_IMAGE_SHA256
    check_var OS_IMAGE_URL "$URL_RE" "a URL or a path"
    check_var OS_IMAGE_SHA256 '[0-9a-f]{64}' "a sha256 checksum (64 lowercase hex digits)"
    need_tool sha256sum "it comes with coreutils"
    if [ -n "${GITVPS_CACHE-}" ]; then
        _dir="$GITVPS_CACHE/images"
    else
        _dir=$(mktemp -d)
        # shellcheck disable=SC2064
        trap "rm -rf '$_dir'" EXIT
    fi
    mkdir -p "$_dir"
    _file="$_dir/$OS_IMAGE_SHA256.tar"
    if [ -f "$_file" ] && [ "$(sha256_of "$_file")" = "$OS_IMAGE_SHA256" ]; then
        echo "gitvps: using the cached image $OS_IMAGE_SHA256"
    else
        rm -f "$_file"
        echo "gitvps: fetching $OS_IMAGE_URL"
        fetch "$OS_IMAGE_URL" "$_file.part"
        _got=$(sha256_of "$_file.part")
        if [ "$_got" != "$OS_IMAGE_SHA256" ]; then
            rm -f "$_file.part"
            die "$EX_DATAERR" "checksum mismatch for $OS_IMAGE_URL: expected $OS_IMAGE_SHA256, got $_got; nothing was unpacked"
        fi
        mv -f "$_file.part" "$_file"
    fi
    # GNU tar recognises gzip, xz and zstd archives by their content.
    tar -C "$TARGET" --numeric-owner -xpf "$_file"
}
