import {
  checkpointLabels,
  humanSize,
  mergePage,
  nextDelay,
  parseParameters,
  relativeTime,
  runDuration,
  runProblem,
  summarize,
  timeWithSeconds,
  versionMarkers,
  withDropped
} from '../format';

const NOW = Date.parse('2026-01-10T12:00:00Z');

function version(id: string | null, extra: object = {}): any {
  return {
    version_id: id,
    last_modified: '2026-01-10T11:00:00Z',
    size: 10,
    is_latest: false,
    sha256: null,
    user: 'ada',
    saved_at: null,
    save_id: id ? `s-${id}` : 'p-1',
    pending: !id,
    ...extra
  };
}

function status(archive: object): any {
  return {
    release: '0.1',
    features: {},
    archive: { enabled: true, pending: 0, ...archive }
  };
}

describe('relativeTime', () => {
  it('says just now, minutes, hours and days, past and future', () => {
    expect(relativeTime('2026-01-10T11:59:55Z', NOW)).toBe('just now');
    expect(relativeTime('2026-01-10T11:55:00Z', NOW)).toBe('5 minutes ago');
    expect(relativeTime('2026-01-10T11:00:00Z', NOW)).toBe('1 hour ago');
    expect(relativeTime('2026-01-07T12:00:00Z', NOW)).toBe('3 days ago');
    expect(relativeTime('2026-01-10T14:00:00Z', NOW)).toBe('in 2 hours');
    expect(relativeTime(null, NOW)).toBe('unknown time');
  });
});

describe('humanSize', () => {
  it('uses powers of 1024', () => {
    expect(humanSize(0)).toBe('0 B');
    expect(humanSize(512)).toBe('512 B');
    expect(humanSize(1536)).toBe('1.5 KB');
    expect(humanSize(12 * 1024 * 1024)).toBe('12 MB');
  });
});

describe('versions', () => {
  it('marks pending, restored, renamed and latest versions', () => {
    const kinds = (v: any) => versionMarkers(v).map(m => m.kind);
    expect(kinds(version(null))).toEqual(['pending']);
    expect(
      kinds(version('a', { restored_from: 'x', is_latest: true }))
    ).toEqual(['restored', 'latest']);
    expect(kinds(version('a', { renamed_from: 'old.ipynb' }))).toEqual([
      'renamed'
    ]);
  });

  it('adds a page without repeating a version already listed', () => {
    const merged = mergePage(
      [version('a'), version('b')],
      [version('b'), version('c')]
    );
    expect(merged.map(v => v.version_id)).toEqual(['a', 'b', 'c']);
  });
});

describe('summarize', () => {
  it('says Archived, N saves waiting, or warns while uploads fail', () => {
    expect(summarize(status({})).text).toBe('Archived');
    expect(summarize(status({ pending: 3 }))).toMatchObject({
      level: 'busy',
      text: '3 saves waiting'
    });
    const failing = summarize(
      status({
        pending: 1,
        last_error: { message: 'S3 unreachable', at: '2026-01-10T12:00:00Z' },
        last_upload: { path: 'a', at: '2026-01-10T11:00:00Z' }
      })
    );
    expect(failing).toMatchObject({
      level: 'warning',
      problem: 'S3 unreachable'
    });
    expect(failing.text).toContain('1 save waiting');
  });

  it('does not warn for an old error once uploads work again', () => {
    const recovered = summarize(
      status({
        last_error: { message: 'old', at: '2026-01-10T11:00:00Z' },
        last_upload: { path: 'a', at: '2026-01-10T12:00:00Z' }
      })
    );
    expect(recovered.level).toBe('ok');
  });

  it('warns about saves set aside or dropped', () => {
    expect(summarize(status({ dropped_saves: 4 })).level).toBe('ok');
    expect(summarize(status({ spool_limit_reached: true })).level).toBe(
      'warning'
    );
    expect(summarize(status({ set_aside_count: 2 }))).toMatchObject({
      level: 'warning',
      text: '2 saves set aside'
    });
  });

  it('warns when the server cannot be reached, and is off without archiving', () => {
    expect(summarize(null, 'down').level).toBe('warning');
    expect(summarize(status({ enabled: false })).level).toBe('off');
  });
});

describe('nextDelay', () => {
  it('polls fast while saves wait and backs off while idle, up to a minute', () => {
    const busy = summarize(status({ pending: 1 }));
    const ok = summarize(status({}));
    expect(nextDelay(busy, 30000)).toBe(2000);
    let delay = 0;
    const seen: number[] = [];
    for (let i = 0; i < 20; i++) {
      delay = nextDelay(ok, delay);
      seen.push(delay);
    }
    expect(seen[0]).toBe(5000);
    expect(seen[1]).toBeGreaterThan(seen[0]);
    expect(Math.max(...seen)).toBe(60000);
  });
});

describe('runs', () => {
  it('formats durations and parses parameters', () => {
    expect(
      runDuration({
        run_id: 'r',
        status: 'succeeded',
        started: '2026-01-10T11:00:00Z',
        finished: '2026-01-10T11:03:04Z'
      })
    ).toBe('3 min 4 s');
    expect(runDuration({ run_id: 'r', status: 'running' })).toBe('');
    expect(
      runDuration({ run_id: 'r', status: 'succeeded', duration: 12.4 })
    ).toBe('12 s');
    expect(
      runProblem({
        run_id: 'r',
        status: 'failed',
        error: { ename: 'ValueError', evalue: 'bad' }
      })
    ).toBe('ValueError: bad');
    expect(parseParameters('alpha = 0.5\nregion = "eu"\nname = plain')).toEqual(
      {
        alpha: 0.5,
        region: 'eu',
        name: 'plain'
      }
    );
    expect(parseParameters('{"n": 3}')).toEqual({ n: 3 });
    expect(() => parseParameters('not a pair')).toThrow('name = value');
    expect(() => parseParameters('[1]')).toThrow();
  });
});

describe('revert dialog entries', () => {
  it('tells apart saves made within the same minute, newest first', () => {
    const saves = [
      {
        id: 'v-3HL4kqtJlcpXroDTDmJ.ebHsa',
        last_modified: '2026-01-10T11:59:58Z'
      },
      {
        id: 'v-9aB7kqtJlcpXroDTDmJ.ebHsb',
        last_modified: '2026-01-10T11:59:55Z'
      },
      { id: 'p-20260110T115950', last_modified: '2026-01-10T11:59:50Z' }
    ];
    const labels = checkpointLabels(saves, NOW);
    expect(new Set(labels).size).toBe(3);
    expect(labels[0]).toBe(
      `0. ${timeWithSeconds(saves[0].last_modified)} (just now) · v-3HL4kqtJlc… · newest`
    );
    expect(labels[2].startsWith('2. ')).toBe(true);
    expect(labels[2]).toContain('p-20260110T1…');
    expect(timeWithSeconds('2026-01-10T11:59:55Z')).toMatch(
      /^\d{4}-\d\d-\d\d \d\d:\d\d:55$/
    );
  });
});

describe('dropped saves', () => {
  it('marks versions after saves dropped from a full spool', () => {
    const marks = versionMarkers(version('a', { dropped_saves: 3 }));
    expect(marks.map(m => m.label)).toContain('3 dropped before');
    expect(versionMarkers(version('a')).map(m => m.kind)).not.toContain(
      'dropped'
    );
  });

  it('places set-aside saves among the versions by save time', () => {
    const newer = version('new', { saved_at: '2026-01-10T11:30:00Z' });
    const older = version('old', { saved_at: '2026-01-10T10:30:00Z' });
    const aside = {
      save_id: 's1',
      saved_at: '2026-01-10T11:00:00Z',
      size: 12,
      reason: 'InvalidStorageClass: bad class',
      code: 'InvalidStorageClass',
      set_aside_at: '2026-01-10T11:00:01Z'
    };
    const listed = withDropped([newer, older], [aside]);
    expect(listed.map(v => v.version_id ?? v.save_id)).toEqual([
      'new',
      's1',
      'old'
    ]);
    expect(listed[1].dropped).toBe(true);
    const marker = versionMarkers(listed[1])[0];
    expect(marker.label).toBe('not archived');
    expect(marker.title).toContain('InvalidStorageClass: bad class');
    // Listed again (refresh): not twice.
    expect(withDropped(listed, [aside]).length).toBe(3);
  });
});
