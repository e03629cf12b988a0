#!/usr/bin/env python3
"""Steady-state measurement of the running 100k scale bench, by hand: pauses
the bench (SIGSTOP) at the start of its background phase, stops simnode's
crashes, measures 4 minutes of the healthy fleet (the frontend's counters,
CPU of each process tree including waited-for children, history events and
database size), then runs the background crashes for 4 minutes itself and
resumes the bench, which collects them."""
import json, os, re, signal, subprocess, sys, time, urllib.request
LOG = '/work/notes/s6/scale100k.log'
OUT = '/work/notes/s6/steady100k.json'
bench = int(sys.argv[1]); sim = sys.argv[2]; mport = sys.argv[3]
def envof(pid):
    return dict(l.split('=', 1) for l in open(f'/proc/{pid}/environ').read().split('\0') if '=' in l)
def pgrep(pat):
    return [int(x) for x in subprocess.run(['pgrep', '-f', pat], capture_output=True, text=True).stdout.split()]
# wait for the background phase
while True:
    if 'scale: background crashes' in open(LOG).read():
        os.kill(bench, signal.SIGSTOP); break
    time.sleep(0.05)
paused = time.time()
def post(path):
    req = urllib.request.Request(sim + path, method='POST'); return urllib.request.urlopen(req).read()
post('/crash-rate?per_hour=0')
print('paused bench and stopped crashes at', time.strftime('%H:%M:%S'), flush=True)
fe = pgrep('service frontend')[0]; env = envof(fe)
pg = dict(PGPASSWORD=env['POSTGRES_PWD'], PATH=os.environ['PATH'])
def sql(db, q):
    return subprocess.run(['psql', '-h', '127.0.0.1', '-p', env['DB_PORT'], '-U', env['POSTGRES_USER'], '-d', db, '-Atc', q],
                          capture_output=True, text=True, env=pg, check=True).stdout.strip()
def scrape():
    txt = urllib.request.urlopen(f'http://127.0.0.1:{mport}/metrics').read().decode()
    req, act = {}, 0.0
    for line in txt.splitlines():
        m = re.match(r'^(service_requests|action)\{(.*)\} ([0-9.e+]+)$', line)
        if not m: continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if labels.get('namespace') != 'default' or labels.get('service_name') != 'frontend': continue
        if m.group(1) == 'action': act += float(m.group(3))
        else: req[labels['operation']] = req.get(labels['operation'], 0) + float(m.group(3))
    return req, act
def parents():
    par = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                st = open(f'/proc/{d}/stat').read(); f = st[st.rindex(')') + 2:].split(); par[int(d)] = int(f[1])
            except OSError: pass
    return par
def cpu(pid):  # utime+stime+cutime+cstime, seconds
    st = open(f'/proc/{pid}/stat').read(); f = st[st.rindex(')') + 2:].split()
    return sum(int(f[i]) for i in (11, 12, 13, 14)) / 100.0
def tree(pid):
    par = parents(); total = 0.0
    for p in par:
        q, k = p, 0
        while q != pid and q > 1 and k < 32: q = par.get(q, 0); k += 1
        if q == pid:
            try: total += cpu(p)
            except OSError: pass
    return total
procs = {'postgres': pgrep('bin/postgres -D')[0], 'simnode': pgrep('simnode --nodes')[0]}
for svc in ('frontend', 'history', 'matching', 'worker'):
    procs['temporal-' + svc] = pgrep('service ' + svc)[0]
for name, pat in (('vigil-worker', 'vigil-worker'), ('containerd', 'containerd --config')):
    p = pgrep(pat)
    if p: procs[name] = p[0]
time.sleep(30)  # the last crashes' restarts
def dbbytes():
    return sum(int(sql(db, 'SELECT pg_database_size(current_database())')) for db in ('temporal', 'temporal_visibility'))
def events():
    return int(sql('temporal', 'SELECT COALESCE(SUM(next_event_id - 1), 0) FROM executions'))
r0, a0 = scrape(); c0 = {k: tree(v) for k, v in procs.items()}; e0 = events(); t0 = time.time()
time.sleep(240)
r1, a1 = scrape(); c1 = {k: tree(v) for k, v in procs.items()}; e1 = events(); t1 = time.time()
d = t1 - t0
ops = {k: r1[k] - r0.get(k, 0) for k in r1 if r1[k] - r0.get(k, 0) > 0}
polls = sum(v for k, v in ops.items() if k.startswith('Poll'))
reqs = sum(v for k, v in ops.items() if not k.startswith('Poll'))
hb = ops.get('RecordActivityTaskHeartbeat', 0) + ops.get('RecordActivityTaskHeartbeatById', 0)
node = hb + ops.get('ListWorkflowExecutions', 0) + ops.get('RecordWorkerHeartbeat', 0)
nodes, replicas = 101, 100100  # 100 simulated nodes and node-a; node-a's 100 storm containers
cpus = {k: round((c1[k] - c0[k]) / d * 100, 1) for k in procs}
res = dict(started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0)), interval_s=round(d, 1), nodes=nodes, replicas=replicas,
           requests=reqs, long_polls=polls, actions=a1 - a0, requests_by_operation=ops,
           requests_per_replica_hour=round((reqs - node) / (d / 3600) / replicas, 4),
           node_heartbeats_per_node_hour=round(hb / (d / 3600) / nodes, 1),
           node_level_requests_per_node_hour=round(node / (d / 3600) / nodes, 1),
           actions_per_replica_hour=round((a1 - a0) / (d / 3600) / replicas, 3),
           cpu_percent_of_one_core=cpus,
           cluster_cpu_percent_of_one_core=round(sum(v for k, v in cpus.items() if k.startswith('temporal') or k == 'postgres'), 1),
           history_events=e1 - e0, history_events_per_replica_day=round((e1 - e0) / replicas / (d / 86400), 4),
           db_bytes=dbbytes(), load_average=open('/proc/loadavg').read().split()[:3])
json.dump(res, open(OUT, 'w'), indent=1)
print(json.dumps(res), flush=True)
post('/crash-rate?per_hour=0.01')
print('background crashes on at', time.strftime('%H:%M:%S'), flush=True)
time.sleep(240)
os.kill(bench, signal.SIGCONT)
print('resumed the bench at', time.strftime('%H:%M:%S'), 'after', round(time.time() - paused), 's', flush=True)
