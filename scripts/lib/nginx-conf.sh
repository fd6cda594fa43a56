# Sourced by scripts/callgrind.sh and scripts/cpu-split.sh: the harness's nginx contender
# (../shared/bench/conf/nginx.conf, one worker) as a single process (master process off),
# listening on $PORT in front of the upstream on $UP_PORT, with the harness's certificates
# from $TOOLS. Writes $WORK/nginx.conf and makes $WORK/nginx (its prefix).
write_nginx_conf() {
  mkdir -p "$WORK/nginx"
  sed -e "s#@RUN@#$WORK#g; s#@PORT@#$PORT#g; s#@CERT@#$TOOLS/certs/server.pem#g" \
    -e "s#@KEY@#$TOOLS/certs/server.key#g; s#@UPSTREAM@#127.0.0.1:$UP_PORT#g" \
    -e 's/^master_process on;/master_process off;/' \
    "${BENCH_DIR:-../shared/bench}/conf/nginx.conf" > "$WORK/nginx.conf"
}
