/**
 * The state the sidebar and the status bar show: polled from the server extension
 * (GET /newsletter-kit/status, newsletter_kit/serverext.py), so no kernel is needed.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

/** Today's quota (null in IStatus when there are no SMTP settings). */
export interface IQuota {
  limit: number;
  used: number;
  reserved: number;
  remaining: number;
  day: string;
  resets_at: string;
}

/** One campaign's progress, as `newsletter-kit campaign status` counts it. */
export interface ICampaign {
  name: string;
  list: string;
  status: string;
  created_at?: string;
  total: number;
  sent: number;
  pending: number;
  unknown: number;
  failed: number;
  excluded: number;
  forecast_finish: string | null;
}

/** This bundle's version: the server extension's must be the same (same newsletter_kit). */
export const FRONTEND_VERSION = '0.1.0';

/** The answer of GET /newsletter-kit/status (newsletter_kit.overview.overview_of_path). */
export interface IStatus {
  server_version?: string;
  store: string;
  exists: boolean;
  error: string | null;
  quota: IQuota | null;
  /** The campaigns a run moves and the most recent few; the rest: fetchCampaigns. */
  campaigns: ICampaign[];
  /** How many campaigns there are: {"total": n, status: n...}. */
  campaign_counts: Record<string, number>;
  last_bounce_fetch: string | null;
  suppressed: number;
  generated_at: string;
  /** Campaigns scheduled for `newsletter-kit run`, highest priority first. */
  schedules?: ISchedule[];
  /** With several SMTP relays: each one's use today (empty with the dedicated server alone). */
  relays?: IRelay[];
}

export interface ISchedule {
  campaign: string;
  start_at: string;
  tz: string;
  window: string | null;
  days: string;
  priority: number;
  open: boolean;
  next_opening: string;
}

export interface IRelay {
  relay: string;
  enabled: boolean;
  limit: number;
  used: number;
  weight: number;
}

/** The notebooks the launcher cards and the sidebar's buttons open. */
export type Template = 'settings' | 'campaign' | 'bounce_review';

/** A request to the server extension; a failed one throws with the server's message. */
export async function requestAPI<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'newsletter-kit', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // not JSON (a proxy's error page): keep the text for the message
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data.message || String(data));
  }
  return data as T;
}

/** Puts a ready notebook in `folder` (never overwriting a file) and returns its path. */
export async function makeNotebook(template: Template, folder: string): Promise<string> {
  const answer = await requestAPI<{ path: string; created: boolean }>('notebooks', {
    method: 'POST',
    body: JSON.stringify({ template, folder })
  });
  return answer.path;
}

/** One page of GET /newsletter-kit/campaigns (newsletter_kit.overview.campaign_page). */
export interface ICampaignPage {
  total: number;
  offset: number;
  limit: number;
  campaigns: ICampaign[];
  error: string | null;
}

/** A page of campaigns, newest first (`status` picks one status). */
export async function fetchCampaigns(offset: number, limit = 20, status = ''): Promise<ICampaignPage> {
  const query = new URLSearchParams({ offset: String(offset), limit: String(limit), status });
  return requestAPI<ICampaignPage>(`campaigns?${query.toString()}`);
}

/** Polls the status every `interval` ms while the page is visible; `changed` on each answer. */
export class StatusModel {
  /** The store to show (a path inside the server root; empty: the server's own). */
  store = '';

  /** How often to ask, in ms (the Settings Editor's refresh interval). */
  set interval(ms: number) {
    this._poll.frequency = { ...this._poll.frequency, interval: ms, backoff: false };
  }

  constructor(interval = 5000) {
    this._poll = new Poll({
      auto: true,
      factory: () => this.refresh(),
      frequency: { interval, backoff: false },
      name: 'newsletter-kit:status',
      standby: 'when-hidden'
    });
  }

  /** The last answer (null before the first one). */
  get status(): IStatus | null {
    return this._status;
  }

  /** Why the last request failed (null when it worked). */
  get error(): string | null {
    return this._error;
  }

  /** A sentence when the page's extension and the server's are not the same version, else null. */
  get versionMismatch(): string | null {
    const server = this._status?.server_version;
    if (!server || server === FRONTEND_VERSION) {
      return null;
    }
    return `This page runs the Newsletter extension ${FRONTEND_VERSION} but the server has newsletter_kit ` +
      `${server}: reload the page; if this stays, reinstall newsletter_kit and restart JupyterLab.`;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Asks the server now (the poll also calls this). */
  async refresh(): Promise<void> {
    try {
      const answer = await this._fetch();
      if (answer !== null) {
        this._status = answer;
      }
      this._error = null;
    } catch (error) {
      this._error = (error as Error).message || String(error);
    }
    this._changed.emit();
  }

  /** The status, or null when it has not changed since the last answer (a 304 on its ETag). */
  private async _fetch(): Promise<IStatus | null> {
    const settings = ServerConnection.makeSettings();
    const query = this.store ? `?store=${encodeURIComponent(this.store)}` : '';
    const url = URLExt.join(settings.baseUrl, 'newsletter-kit', 'status') + query;
    const headers: Record<string, string> = {};
    if (this._etag && this._status) {
      headers['If-None-Match'] = this._etag;
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, { headers }, settings);
    } catch (error) {
      throw new ServerConnection.NetworkError(error as TypeError);
    }
    if (response.status === 304) {
      return null;
    }
    const text = await response.text();
    let data: any = text;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      // not JSON (a proxy's error page): keep the text for the message
    }
    if (!response.ok) {
      throw new ServerConnection.ResponseError(response, data.message || String(data));
    }
    this._etag = response.headers.get('Etag');
    return data as IStatus;
  }

  dispose(): void {
    this._poll.dispose();
  }

  private _poll: Poll;
  private _status: IStatus | null = null;
  private _error: string | null = null;
  private _etag: string | null = null;
  private _changed = new Signal<this, void>(this);
}
