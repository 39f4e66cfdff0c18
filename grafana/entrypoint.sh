#!/bin/sh
# Entrypoint of the Grafana container in the IRVE stack.
#
# Grafana provisioning cannot make a contact point conditional, so this script assembles
# them: it copies grafana/provisioning/ (mounted read-only at $IRVE_GRAFANA_DIR) to Grafana's
# provisioning folder and writes alerting/irve-notifications.yaml with one contact point,
# `irve-telephone`, holding only the channels whose environment variables are set, plus the
# notification policy. With no channel set, the file only resets the notification policy to
# Grafana's default (its e-mail contact point sends nothing without SMTP): alerts show in
# Grafana and nothing leaves the machine. Secrets stay ${VAR} references that Grafana
# expands when it loads the file; this script never writes their values.
#
# Usage: entrypoint.sh [COMMAND...]   (default COMMAND: /run.sh, the Grafana image's start)
set -eu

SRC="${IRVE_GRAFANA_DIR:-/etc/irve-grafana}"
DEST="${GF_PATHS_PROVISIONING:-/etc/grafana/provisioning}"
OUT="$DEST/alerting/irve-notifications.yaml"

is_set() {
    eval "[ -n \"\${$1:-}\" ]"
}

# channel -> the variables it needs (all of them)
required() {
    case "$1" in
        ntfy) echo IRVE_ALERT_NTFY_URL ;;
        telegram) echo IRVE_ALERT_TELEGRAM_BOT_TOKEN IRVE_ALERT_TELEGRAM_CHAT_ID ;;
        pushover) echo IRVE_ALERT_PUSHOVER_APP_TOKEN IRVE_ALERT_PUSHOVER_USER_KEY ;;
        email) echo IRVE_ALERT_EMAIL_TO ;;
    esac
}

mkdir -p "$DEST"
cp -R "$SRC/provisioning/." "$DEST/"
mkdir -p "$DEST/alerting"
rm -f "$OUT"

snippets=""
enabled=""
for channel in ntfy telegram pushover email; do
    missing=""
    present=""
    for var in $(required "$channel"); do
        if is_set "$var"; then present="$present $var"; else missing="$missing $var"; fi
    done
    if [ -z "$missing" ]; then
        file="$channel.yaml"
        if [ "$channel" = ntfy ] && is_set IRVE_ALERT_NTFY_TOKEN; then file="ntfy-token.yaml"; fi
        snippets="$snippets $SRC/notifications/$file"
        enabled="$enabled $channel"
    elif [ -n "$present" ]; then
        echo "irve: $channel notifications NOT enabled: missing$missing" >&2
    fi
done

if [ -n "$enabled" ]; then
    {
        printf 'apiVersion: 1\n\ncontactPoints:\n  - orgId: 1\n    name: irve-telephone\n    receivers:\n'
        for file in $snippets; do cat "$file"; done
        printf '\n'
        cat "$SRC/notifications/policies.yaml"
    } >"$OUT"
    echo "irve: alert notifications enabled:$enabled" >&2
else
    # Back to Grafana's default policy, in case a channel was enabled on an earlier start.
    printf 'apiVersion: 1\n\nresetPolicies:\n  - 1\n' >"$OUT"
    echo "irve: no alert notification channel configured; alerts are shown in Grafana only" >&2
fi

[ "$#" -gt 0 ] || set -- /run.sh
exec "$@"
