#!/usr/bin/env python3
"""Verdict of one subiquity dry-run (../shared/tools/subiquity) on one seed.

subiquity-dryrun.sh judges what the installer itself writes. microseed's seed
also writes files in the install phase (late-commands), which the installer
runs after its own: this judges the installed system as it stands after
them, per revision, from what the dry-run left behind:

  - the tool's own checks: dry-run exit 0, completion, no crash report,
    autoinstall schema (22.07.2), every first-boot key unchanged;
  - the target's netplan (after late-commands) equals autoinstall.network as
    the installer's cloud-init extracted it, and `netplan generate` takes it;
  - the target's /etc/netplan holds only that file, and its cloud.cfg.d
    hands no network to cloud-init; the revision's cloud-init, merging that
    cloud.cfg.d, renders no network of its own;
  - the target's /etc/hostname is the machine's name;
  - that revision's cloud-init, given the target's cloud.cfg.d, ignores a
    CIDATA device (20.04.3: and the same device does win without the drop-in);
  - the curtin storage plan: the expected disk, and root on ubuntu-vg/ubuntu-lv
    (what the storage late-command grows), with sizes printed;
  - with UNTOUCHED (the NFS data disk, nfs.data_disk): no storage action
    names that disk, by path or serial. curtin partitions, formats and
    wipes only what the storage config names (block_meta
    get_device_paths_from_storage_config: entries with `wipe`), and
    subiquity renders only the disk its `match` picked (_render_actions
    skips preserved, unused disks), so the data disk is left as it was.

usage: subiquity-verdict.py TOOL_LOG WORKDIR TARGET_2004 HOSTNAME DISK MODE HARNESS [UNTOUCHED]
"""
import json, os, re, subprocess, sys, tempfile
import yaml

log_path, wd, t2004, hostname, disk, mode, harness = sys.argv[1:8]
untouched = sys.argv[8] if len(sys.argv) > 8 else None
log = open(log_path).read()
sections = re.split(r'^== subiquity ', log, flags=re.M)[1:]
by_rev = {s.split()[0]: s for s in sections}
overall = 0

CI = {'20.04.3': ('venv36', 'ci-20.1'), '22.07.2': ('venv38', 'ci-22.2')}

# Runs inside the revision's own cloud-init: merges the target's cloud.cfg.d,
# then runs NoCloud's get_data with a CIDATA "stick" offered as a device.
PROBE = r'''
import json, os, sys, tempfile
from cloudinit import helpers, net, util
from cloudinit.sources import DataSourceNoCloud as m
cfgdir, cloud_dir, use_dropin = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
cfg = {}
if use_dropin and os.path.isdir(cfgdir):
    cfg = util.read_conf_d(cfgdir)
stick = {'user-data': b'#cloud-config\n{stick: true}\n', 'meta-data': {'instance-id': 'stick'}}
asked = []
def devices(self, label):
    asked.append(label)
    return ['/dev/fake-cidata-stick']
m.DataSourceNoCloud._get_devices = devices
util.mount_cb = lambda dev, cb, data=None, **kw: stick
tmp = tempfile.mkdtemp()
# the seed directory is CLOUD_DIR/seed, as on the installed system
paths = helpers.Paths({'cloud_dir': cloud_dir, 'run_dir': tmp})
ds = m.DataSourceNoCloudNet(cfg, None, paths)
ok = ds.get_data()
ud = ds.userdata_raw.decode() if isinstance(ds.userdata_raw, bytes) else ds.userdata_raw
print(json.dumps({'found': ok, 'stick_won': 'stick: true' in (ud or ''), 'labels_scanned': asked,
                  'datasource_list': cfg.get('datasource_list'),
                  'network_disabled': net.is_disabled_cfg(cfg.get('network')),
                  'fs_label': cfg.get('datasource', {}).get('NoCloud', {}).get('fs_label', 'ABSENT')}))
'''


def check(rev, sec):
    bad = []
    say = lambda m: print('  ' + m)
    for need in ('dry-run exit: 0', 'completed: yes'):
        if need not in sec:
            bad.append('tool: no "%s"' % need)
    if 'crash reports:' in sec:
        bad.append('tool: crash report')
    if rev == '22.07.2' and 'schema (autoinstall-schema.json): ok' not in sec:
        bad.append('autoinstall schema')
    m = re.search(r'(\d+) of (\d+) microseed keys reached the target unchanged', sec)
    if not m or m.group(1) != m.group(2):
        bad.append('first-boot config: %s' % (m.group(0) if m else 'not compared'))
    else:
        say('first-boot config: %s' % m.group(0))
    out = os.path.join(wd, rev)
    ai = yaml.safe_load(open(os.path.join(out, 'autoinstall.yaml')))
    dot = os.path.join(out, 'dot-subiquity')
    target = t2004 if rev == '20.04.3' else dot
    # netplan after late-commands
    np_path = os.path.join(target, 'etc/netplan/00-installer-config.yaml')
    want = ai['network'].get('network', ai['network'])
    if not os.path.exists(np_path):
        bad.append('target netplan missing')
    else:
        got = yaml.safe_load(open(np_path))['network']
        if got != want:
            bad.append('target netplan != autoinstall.network: %r' % got)
        else:
            say('target netplan (after late-commands) == autoinstall.network: yes')
        if os.stat(np_path).st_mode & 0o077:
            bad.append('target netplan readable by others')
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(root + '/etc/netplan')
            dst = root + '/etc/netplan/00-installer-config.yaml'
            open(dst, 'w').write(open(np_path).read())
            os.chmod(dst, 0o600)
            r = subprocess.run(['netplan', 'generate', '--root-dir', root], capture_output=True, text=True)
        if r.returncode != 0:
            bad.append('netplan generate: ' + r.stderr.strip())
        else:
            say('netplan generate (target netplan): ok')
    # One netplan on the target (netplan merges every file), and no network
    # handed to cloud-init (24.04's 90-installer-network.cfg).
    left = sorted(os.listdir(os.path.join(target, 'etc/netplan')))
    if left != ['00-installer-config.yaml']:
        bad.append('target /etc/netplan holds %r, not only the seed\'s file' % left)
    cfgd_files = sorted(os.listdir(os.path.join(target, 'etc/cloud/cloud.cfg.d')))
    handed = [f for f in cfgd_files if f in ('90-installer-network.cfg', '50-curtin-networking.cfg')]
    if handed:
        bad.append('target cloud.cfg.d still hands the network to cloud-init: %r' % handed)
    else:
        say('target: one netplan file; cloud.cfg.d %s' % ' '.join(cfgd_files))
    hn = os.path.join(target, 'etc/hostname')
    got_hn = open(hn).read() if os.path.exists(hn) else None
    if got_hn != hostname + '\n':
        bad.append('target /etc/hostname is %r, not %r' % (got_hn, hostname))
    else:
        say('target /etc/hostname: %s' % hostname)
    # datasource, through this revision's cloud-init
    venv, ci = CI[rev]
    py = [os.path.join(harness, venv, 'bin/python3'), '-c', PROBE]
    env = dict(os.environ, PYTHONPATH=os.path.join(harness, ci))
    seed = os.path.join(dot, 'var/lib/cloud')
    cfgd = os.path.join(target, 'etc/cloud/cloud.cfg.d')
    def probe(dropin):
        r = subprocess.run(py + [cfgd, seed, '1' if dropin else '0'], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            bad.append('cloud-init probe: ' + r.stderr.strip()[-300:])
            return None
        return json.loads(r.stdout.strip().splitlines()[-1])
    p = probe(True)
    if p is not None:
        # After the late-command, this revision's cloud-init renders no
        # network of its own over the target netplan.
        if not p['network_disabled']:
            bad.append('merged cloud.cfg.d: cloud-init network rendering not disabled')
        else:
            say('merged cloud.cfg.d (this revision\'s cloud-init): network rendering disabled')
        if p['fs_label'] is not None:
            bad.append('merged cloud.cfg.d: datasource.NoCloud.fs_label = %r' % p['fs_label'])
        if rev == '20.04.3':
            base = probe(False)
            if base is not None and not (base['found'] and base['stick_won']):
                bad.append('without the drop-in the CIDATA device did not win (%r): check the probe' % base)
            if not p['found'] or p['stick_won']:
                bad.append('with the drop-in: %r' % p)
            else:
                say('cloud-init 20.1 NoCloud: a CIDATA device wins without the drop-in, '
                    'is never scanned with it (installed seed kept)')
        else:
            if p['datasource_list'] != ['None']:
                bad.append('datasource_list %r, expected the installer\'s [None]' % p['datasource_list'])
            else:
                say('cloud.cfg.d: datasource_list [None] (installer\'s), NoCloud fs_label null')
    # storage plan
    cc = [q for q in (dot + '/var/log/installer/subiquity-curtin-install.conf',
                      dot + '/subiquity-curtin-install.conf') if os.path.exists(q)]
    if not cc:
        bad.append('no curtin config')
    else:
        curtin = yaml.safe_load(open(cc[0]))
        # The late-command's netplan must replace the installer's file, not
        # sit beside it (netplan would merge the two), and first-boot
        # cloud-init must not render a network of its own over it.
        wf = curtin.get('write_files', {})
        paths = sorted(f.get('path', '') for f in wf.values())
        if [q for q in paths if q.startswith('etc/netplan/')] != ['etc/netplan/00-installer-config.yaml']:
            bad.append('installer netplan files %r: the late-command replaces only 00-installer-config.yaml' % paths)
        nonet = [f for f in wf.values() if f.get('path', '').startswith('etc/cloud/cloud.cfg.d/')]
        if not any(yaml.safe_load(f.get('content', '')) == {'network': {'config': 'disabled'}} for f in nonet):
            bad.append('the installer did not disable cloud-init networking on the target')
        else:
            say('target netplan replaces the installer\'s only file; cloud-init networking disabled')
        acts = curtin['storage']['config']
        ids = {a['id']: a for a in acts}
        disks = [a for a in acts if a['type'] == 'disk']
        if [d.get('path') for d in disks] != [disk]:
            bad.append('disks used: %r, expected %s' % ([d.get('path') for d in disks], disk))
        vgs = [a for a in acts if a['type'] == 'lvm_volgroup' and a.get('name') == 'ubuntu-vg']
        lvs = [a for a in acts if a['type'] == 'lvm_partition' and a.get('name') == 'ubuntu-lv'
               and vgs and a.get('volgroup') == vgs[0]['id']]
        fmt = [a for a in acts if a['type'] == 'format' and lvs and a.get('volume') == lvs[0]['id']]
        mnt = [a for a in acts if a['type'] == 'mount' and fmt and a.get('device') == fmt[0]['id']]
        if not (vgs and lvs and fmt and mnt and mnt[0].get('path') == '/'):
            bad.append('root is not an ext4 ubuntu-lv in ubuntu-vg: the storage late-command would fail')
        else:
            pv = sum(ids[d]['size'] for d in vgs[0]['devices'])
            say('storage: %s, / on ubuntu-vg/ubuntu-lv %s of a %d-byte VG; late-command grows it (%s)'
                % (disk, lvs[0].get('size'), pv, mode))
    if untouched and cc:
        # The disk's ID_SERIAL, from the machine the dry-run probed.
        mc = json.load(open(os.environ['SQ_MACHINE_CONFIG']))
        serial = mc['storage']['blockdev'].get(untouched, {}).get('ID_SERIAL')
        if not serial:
            bad.append('untouched disk %s is not in the machine config' % untouched)
        named = [a for a in acts
                 if a.get('path') == untouched or (serial and a.get('serial') == serial)]
        if named:
            bad.append('the storage plan names the data disk %s: %r' % (untouched, named))
        else:
            say('data disk %s (%s): in no storage action, so never partitioned, formatted or wiped'
                % (untouched, serial))
    cmds = ai.get('late-commands', [])
    if not any(isinstance(c, list) and c[3:5] == ['microseed-storage', mode] for c in cmds):
        bad.append('no storage late-command with mode %s' % mode)
    for b in bad:
        print('  FAIL: ' + b)
    return not bad


# The revisions this seed was run at (the tier sets SQ_VERSIONS per seed).
for rev in os.environ.get('SQ_VERSIONS', '20.04.3 22.07.2').split():
    if rev not in by_rev:
        print('FAIL %s: the tool did not run it' % rev)
        overall = 1
        continue
    ok = check(rev, by_rev[rev])
    print('%s subiquity %s (after late-commands)' % ('PASS' if ok else 'FAIL', rev))
    overall |= not ok
sys.exit(1 if overall else 0)
