/**
 * The left sidebar "Newsletter": today's quota, each campaign's progress and forecast finish
 * day, the last bounce fetch, the suppressed addresses, and buttons that open the notebooks.
 * It renders whatever StatusModel last got; the numbers carry data-* attributes for tests.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { fetchCampaigns, ICampaign, IQuota, IStatus, StatusModel, Template } from './model';

type Child = Node | string | null | undefined | false;

/** A DOM element: text goes in as text nodes, never as HTML (campaign names are user input). */
function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child);
    }
  }
  return node;
}

function when(iso: string | null, withTime = true): string {
  if (!iso) {
    return 'never';
  }
  const date = new Date(iso.length === 10 ? `${iso}T00:00:00` : iso);
  if (isNaN(date.getTime())) {
    return iso;
  }
  // As the review's tables and the panels write them ("08 Dec 2026 10:47", "Tue 08 Dec 2026"):
  // one way to read a date, whatever the browser's locale.
  const options: Intl.DateTimeFormatOptions = withTime
    ? { day: '2-digit', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false }
    : { weekday: 'short', day: '2-digit', month: 'short', year: 'numeric' };
  return date.toLocaleString('en-GB', options).replace(',', '');
}

/** A bar of segments, widths in proportion to their counts. */
function bar(parts: [string, number][], total: number): HTMLElement {
  const node = h('div', { class: 'nk-lab-bar' });
  for (const [kind, count] of parts) {
    if (count > 0 && total > 0) {
      const segment = h('span', { class: `nk-lab-bar-${kind}`, title: `${count} ${kind}` });
      segment.style.width = `${(100 * count) / total}%`;
      node.append(segment);
    }
  }
  return node;
}

export class NewsletterSidebar extends Widget {
  constructor(
    private model: StatusModel,
    private open: (template: Template) => void,
    private trans: TranslationBundle
  ) {
    super();
    this.id = 'newsletter-kit-sidebar';
    this.addClass('nk-lab-sidebar');
    this.title.caption = trans.__('Newsletter');
    this.model.changed.connect(this.render, this);
    this.render();
  }

  dispose(): void {
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.model.refresh();
  }

  render(): void {
    const status = this.model.status;
    const refresh = h('button', { class: 'nk-lab-refresh jp-Button', title: this.trans.__('Refresh now') }, '↻');
    refresh.addEventListener('click', () => void this.model.refresh());
    const content: Child[] = [h('header', {}, h('h2', {}, this.trans.__('Newsletter')), refresh)];
    if (this.model.error) {
      content.push(h('p', { class: 'nk-lab-error' }, `Cannot read the status: ${this.model.error}`));
    }
    const mismatch = this.model.versionMismatch;
    if (mismatch) {
      content.push(h('p', { class: 'nk-lab-error nk-lab-version' }, mismatch));
    }
    if (status?.error) {
      // Locked, not a store, unreadable: say so, and show no numbers that would look like "empty".
      content.push(h('section', { class: 'nk-lab-unreadable' },
        h('h3', {}, this.trans.__('The store cannot be read')),
        h('p', { class: 'nk-lab-error' }, status.error),
        h('p', { class: 'nk-lab-muted' }, 'The numbers come back when it can be read again (↻ to retry).')));
      content.push(this.buttons());
    } else if (status === null) {
      content.push(h('p', { class: 'nk-lab-muted' }, this.trans.__('Loading…')), this.buttons());
    } else {
      // The short sections and the buttons first: a long list of campaigns scrolls below them.
      content.push(this.quota(status), this.relays(status), this.buttons(), this.bounces(status),
        this.schedules(status), this.campaigns(status));
      if (this._moreError) {
        content.push(h('p', { class: 'nk-lab-error' }, `Cannot list more campaigns: ${this._moreError}`));
      }
    }
    if (status) {
      content.push(h('p', { class: 'nk-lab-store nk-lab-muted', title: status.store },
        `Store: ${status.store}${status.exists ? '' : ' (not created yet)'}`));
    }
    this.node.replaceChildren(...content.filter((c): c is Node | string => !!c));
  }

  /** Each relay's use today, when there are several (nothing with the dedicated server alone). */
  private relays(status: IStatus): HTMLElement | null {
    const relays = status.relays ?? [];
    if (relays.length === 0) {
      return null;
    }
    const section = h('section', { class: 'nk-lab-relays' }, h('h3', {}, this.trans.__('Relays')));
    for (const r of relays) {
      section.append(h('div', {
        class: 'nk-lab-relay', 'data-relay': r.relay, 'data-used': String(r.used), 'data-limit': String(r.limit)
      },
        h('p', {}, h('strong', {}, r.relay), ` ${r.used} / ${r.limit} today`,
          r.enabled ? '' : ' (disabled)', r.weight !== 1 ? ` · weight ${r.weight}` : ''),
        bar([['used', r.used]], Math.max(r.limit, 1))));
    }
    return section;
  }

  /** What `newsletter-kit run` will send, and when its window next opens. */
  private schedules(status: IStatus): HTMLElement | null {
    const schedules = status.schedules ?? [];
    if (schedules.length === 0) {
      return null;
    }
    const section = h('section', { class: 'nk-lab-schedules' }, h('h3', {}, this.trans.__('Scheduled')));
    for (const s of schedules) {
      const window = [s.window, s.days !== 'daily' ? s.days : null].filter(Boolean).join(', ');
      section.append(h('p', { class: 'nk-lab-schedule', 'data-campaign': s.campaign, 'data-open': String(s.open) },
        h('strong', {}, s.campaign), ' ',
        s.open ? 'sending window open now' : `next: ${when(s.next_opening)}`,
        window ? ` (${window} ${s.tz})` : ''));
    }
    return section;
  }

  private quota(status: IStatus): HTMLElement {
    const quota: IQuota | null = status.quota;
    if (!quota) {
      return h('section', { class: 'nk-lab-quota', 'data-configured': 'false' },
        h('h3', {}, this.trans.__("Today's quota")),
        h('p', { class: 'nk-lab-muted' }, 'No SMTP server yet: open Settings.'));
    }
    return h('section', {
      class: 'nk-lab-quota', 'data-configured': 'true',
      'data-used': String(quota.used), 'data-limit': String(quota.limit)
    },
      h('h3', {}, this.trans.__("Today's quota")),
      bar([['used', quota.used], ['reserved', quota.reserved]], quota.limit),
      h('p', { class: 'nk-lab-quota-text' },
        h('strong', {}, `${quota.used} / ${quota.limit}`), ' sent today',
        quota.reserved ? ` (${quota.reserved} being sent)` : ''),
      h('p', { class: 'nk-lab-muted' }, `${quota.remaining} left · resets ${when(quota.resets_at)}`));
  }

  private campaigns(status: IStatus): HTMLElement {
    const section = h('section', { class: 'nk-lab-campaigns' }, h('h3', {}, this.trans.__('Campaigns')));
    if (status.campaigns.length === 0) {
      section.append(h('p', { class: 'nk-lab-muted' }, 'No campaign yet: open New campaign.'));
    }
    for (const c of status.campaigns) {
      section.append(this.campaign(c));
    }
    // The rest on request, a page at a time (the poll carries only the campaigns above).
    const shown = new Set(status.campaigns.map(c => c.name));
    const extra = this._more.filter(c => !shown.has(c.name));
    for (const c of extra) {
      section.append(this.campaign(c));
    }
    const total = status.campaign_counts?.total ?? status.campaigns.length;
    const left = Math.max(0, total - shown.size - extra.length);
    if (left > 0 && this._moreOffset < total) {
      const more = h('a', { class: 'nk-lab-more', href: '#', 'data-left': String(left) },
        `${left} more campaign${left === 1 ? '' : 's'}…`);
      more.addEventListener('click', event => {
        event.preventDefault();
        void this.loadMore();
      });
      section.append(more);
    }
    return section;
  }

  /** The next page of campaigns, newest first, under the ones the poll shows. */
  async loadMore(): Promise<void> {
    const status = this.model.status;
    if (this._moreOffset === 0 && status) {
      // The poll's recent campaigns are the newest ones: start after them.
      this._moreOffset = status.campaigns.filter(c => !['sending', 'paused', 'scheduled'].includes(c.status)).length;
    }
    try {
      const page = await fetchCampaigns(this._moreOffset, 20);
      if (page.error) {
        throw new Error(page.error);
      }
      this._more.push(...page.campaigns);
      this._moreOffset += page.campaigns.length || page.limit;
    } catch (error) {
      this._moreError = (error as Error).message || String(error);
    }
    this.render();
  }

  private _more: ICampaign[] = [];
  private _moreOffset = 0;
  private _moreError: string | null = null;

  private campaign(c: ICampaign): HTMLElement {
    const attempted = c.sent + c.pending + c.unknown + c.failed;
    const counts = (['sent', 'pending', 'unknown', 'failed'] as const).map(key =>
      h('span', { class: `nk-lab-count nk-lab-${key}`, 'data-count': String(c[key]) }, `${c[key]} ${key}`));
    // A finished campaign says so with its badge: no line repeated under each of them.
    const finish = c.forecast_finish
      ? `finishes ${when(c.forecast_finish, false)} at today's limit`
      : c.pending ? 'no send limit set' : null;
    return h('div', {
      class: 'nk-lab-campaign', 'data-campaign': c.name, 'data-sent': String(c.sent),
      'data-pending': String(c.pending), 'data-unknown': String(c.unknown), 'data-failed': String(c.failed),
      'data-finish': c.forecast_finish ?? ''
    },
      h('div', { class: 'nk-lab-campaign-head' },
        h('span', { class: 'nk-lab-campaign-name' }, c.name),
        h('span', { class: `nk-lab-badge nk-lab-badge-${c.status}` }, c.status)),
      bar([['sent', c.sent], ['failed', c.failed], ['unknown', c.unknown], ['pending', c.pending]], attempted),
      h('div', { class: 'nk-lab-counts' }, ...counts.flatMap((node, i) => (i ? [' · ', node] : [node]))),
      finish && h('div', { class: 'nk-lab-muted nk-lab-finish' }, finish));
  }

  private bounces(status: IStatus): HTMLElement {
    return h('section', { class: 'nk-lab-bounces' },
      h('h3', {}, this.trans.__('Bounces')),
      h('p', { class: 'nk-lab-last-fetch' }, this.trans.__('Last fetch: %1', when(status.last_bounce_fetch))),
      h('p', { class: 'nk-lab-suppressed', 'data-suppressed': String(status.suppressed) },
        this.trans.__('Suppressed addresses: %1', status.suppressed)));
  }

  private buttons(): HTMLElement {
    const node = h('section', { class: 'nk-lab-buttons' });
    const labels: [Template, string][] = [
      ['settings', this.trans.__('Settings')], ['campaign', this.trans.__('New campaign')], ['bounce_review', this.trans.__('Bounce review')]
    ];
    for (const [template, label] of labels) {
      const button = h('button', { class: 'jp-Button jp-mod-styled jp-mod-accept', 'data-template': template }, label);
      button.addEventListener('click', () => this.open(template));
      node.append(button);
    }
    return node;
  }
}
