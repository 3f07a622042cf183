#!/usr/bin/env bash
# The "naive" contender: what many PBX sites run from cron. One file at a time: curl download,
# ffmpeg to MP3, `aws s3 cp` upload. Reads "relative_path<TAB>object_key" lines on stdin.
#
# Environment: PBX_URL, PBX_USER, PBX_PASSWORD, BUCKET, S3_ENDPOINT, AWS (path to the aws CLI),
# FFMPEG, WORK (a scratch folder), plus AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
set -euo pipefail

while IFS=$'\t' read -r relative key; do
    ext=${relative##*.}
    src="$WORK/src.$ext"
    curl -sSf -o "$src" -G "$PBX_URL/cgi-bin/fileget.cgi" \
        --data-urlencode action=rcdownload --data-urlencode "filename=$relative" \
        --data-urlencode "username=$PBX_USER" --data-urlencode "password=$PBX_PASSWORD"
    "$FFMPEG" -nostdin -hide_banner -loglevel error -i "$src" -b:a 32k -y "$WORK/out.mp3"
    "$AWS" s3 cp --only-show-errors --endpoint-url "$S3_ENDPOINT" \
        "$WORK/out.mp3" "s3://$BUCKET/$key"
    rm -f "$src" "$WORK/out.mp3"
done
