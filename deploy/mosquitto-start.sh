#!/bin/sh
# The Mosquitto container's entry point in deploy/compose.yaml: write warnd's account
# (user `warnd`, password $MQTT_PASSWORD) into the password file, keeping any other
# accounts in it, then start Mosquitto as the image does.
#
# A speaker's account (its user name is its speaker id, see mosquitto.acl):
#   docker compose -f deploy/compose.yaml exec mosquitto \
#     mosquitto_passwd -b /mosquitto/data/passwd SPEAKER_ID PASSWORD
#   docker compose -f deploy/compose.yaml kill -s HUP mosquitto   # reload the file
set -eu
: "${MQTT_PASSWORD:?set MQTT_PASSWORD (deploy/.env, see deploy/env.example)}"
file="${MOSQUITTO_PASSWORD_FILE:-/mosquitto/data/passwd}"
[ -f "$file" ] || : > "$file"
mosquitto_passwd -b "$file" warnd "$MQTT_PASSWORD"
if [ "$(id -u)" = 0 ]; then chown mosquitto:mosquitto "$file"; fi
chmod 0600 "$file"
exec /docker-entrypoint.sh /usr/sbin/mosquitto -c "${MOSQUITTO_CONFIG:-/mosquitto/config/mosquitto.conf}"
