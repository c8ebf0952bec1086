/**
 * Progress of a run for people: a cli-progress bar on a terminal (images done/total, rate, ETA,
 * failures), plain lines otherwise (CI logs, pipes), one every 10% or 10 s so logs stay short.
 * The local run and `submit` share it: they report the same numbers.
 */
import { SingleBar } from 'cli-progress';

export interface ProgressUpdate {
  /** What is being counted: `upload`, `featurize`, `aggregate`... */
  readonly phase: string;
  readonly total: number;
  readonly done: number;
  readonly failed: number;
}

export interface ProgressDisplay {
  update(progress: ProgressUpdate): void;
  /** Print a line without breaking the bar. */
  log(line: string): void;
  stop(): void;
}

export interface ProgressDisplayOptions {
  readonly stream?: NodeJS.WriteStream;
  /** @default stream.isTTY */
  readonly tty?: boolean;
  /** No output at all (`--json`). */
  readonly silent?: boolean;
}

export function createProgressDisplay(options: ProgressDisplayOptions = {}): ProgressDisplay {
  const stream = options.stream ?? process.stderr;
  if (options.silent) return { update: () => undefined, log: () => undefined, stop: () => undefined };
  return (options.tty ?? stream.isTTY) ? new BarDisplay(stream) : new LineDisplay(stream);
}

/** Items per second since the phase started. */
class Rate {
  private phase = '';
  private startedAt = 0;
  private startedDone = 0;

  of(progress: ProgressUpdate, now = Date.now()): { rate: number; etaSeconds: number | undefined } {
    if (progress.phase !== this.phase) {
      this.phase = progress.phase;
      this.startedAt = now;
      this.startedDone = progress.done;
    }
    const seconds = (now - this.startedAt) / 1000;
    // Under a second of history the rate is noise (a skipped upload "runs" at 100,000 files/s).
    const rate = seconds >= 1 ? (progress.done - this.startedDone) / seconds : 0;
    const etaSeconds = rate > 0 ? (progress.total - progress.done) / rate : undefined;
    return { rate, etaSeconds };
  }
}

class BarDisplay implements ProgressDisplay {
  private readonly bar: SingleBar;
  private readonly rate = new Rate();
  private started = false;

  constructor(private readonly stream: NodeJS.WriteStream) {
    this.bar = new SingleBar({
      stream,
      format: '{phase} |{bar}| {value}/{total} | {rate}/s | ETA {remaining} | failures {failed}',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    });
  }

  update(progress: ProgressUpdate): void {
    const { rate, etaSeconds } = this.rate.of(progress);
    const payload = { phase: progress.phase.padEnd(9), rate: rate.toFixed(1), remaining: formatSeconds(etaSeconds), failed: progress.failed };
    if (!this.started) {
      this.bar.start(Math.max(progress.total, 1), progress.done, payload);
      this.started = true;
    } else {
      this.bar.setTotal(Math.max(progress.total, 1));
      this.bar.update(progress.done, payload);
    }
  }

  log(line: string): void {
    // Clear the bar's line, print, and let the next update draw the bar again below.
    this.stream.write(`${this.started ? '\r\x1b[2K' : ''}${line}\n`);
  }

  stop(): void {
    if (this.started) this.bar.stop();
    this.started = false;
  }
}

class LineDisplay implements ProgressDisplay {
  private readonly rate = new Rate();
  private last = { phase: '', decile: -1, at: 0 };

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(progress: ProgressUpdate): void {
    const { rate, etaSeconds } = this.rate.of(progress);
    const decile = progress.total > 0 ? Math.floor((10 * progress.done) / progress.total) : 0;
    const now = Date.now();
    const changed = progress.phase !== this.last.phase || decile !== this.last.decile || now - this.last.at > 10_000;
    if (!changed) return;
    this.last = { phase: progress.phase, decile, at: now };
    this.stream.write(
      `${progress.phase}: ${progress.done}/${progress.total} (${rate.toFixed(1)}/s, ETA ${formatSeconds(etaSeconds)}), failures ${progress.failed}\n`,
    );
  }

  log(line: string): void {
    this.stream.write(`${line}\n`);
  }

  stop(): void {
    // Lines need no cleanup.
  }
}

export function formatSeconds(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
