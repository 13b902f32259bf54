/**
 * newsletter_kit in JupyterLab: a "Newsletter" section in the Launcher (Settings, New campaign,
 * Bounce review), a "Newsletter" sidebar and a status bar item such as "Newsletter 45/500 today".
 * Everything reads the server extension (newsletter_kit/serverext.py); no kernel is started
 * until the user opens a notebook.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, TranslationBundle, nullTranslator } from '@jupyterlab/translation';
import { Signal } from '@lumino/signaling';
import { LabIcon, settingsIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { StatusModel, Template, makeNotebook } from './model';
import { NewsletterSidebar } from './sidebar';

const OPEN = 'newsletter-kit:open';
const REFRESH = 'newsletter-kit:refresh';
const SHOW = 'newsletter-kit:show-sidebar';

const envelope =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
  '<path class="jp-icon3" fill="#616161" d="M20 4H4c-1.1 0-2 .9-2 2v12c0 1.1.9 2 2 2h16c1.1 0 2-.9 ' +
  '2-2V6c0-1.1-.9-2-2-2zm0 4-8 5-8-5V6l8 5 8-5v2z"/></svg>';
const newsletterIcon = new LabIcon({ name: 'newsletter-kit:envelope', svgstr: envelope });
const bounced =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
  '<path class="jp-icon3" fill="#616161" d="M4 4h16a2 2 0 0 1 2 2v5h-2V8l-8 5-8-5v10h7v2H4a2 2 0 0 ' +
  '1-2-2V6a2 2 0 0 1 2-2zm0 2v.2l8 5 8-5V6H4zm14 8v2h-4v2h4v2l3-3-3-3z" transform="matrix(-1 0 0 1 24 0)"/></svg>';
const bounceIcon = new LabIcon({ name: 'newsletter-kit:bounce', svgstr: bounced });

const TEMPLATES: Record<Template, { label: string; caption: string; rank: number; icon: LabIcon }> = {
  settings: {
    label: 'Settings', rank: 1, icon: settingsIcon,
    caption: 'The SMTP server, its daily limit and the bounce mailbox (opens 01_settings.ipynb here)'
  },
  campaign: {
    label: 'New campaign', rank: 2, icon: newsletterIcon,
    caption: 'Write, preview and send a campaign (a new copy of 02_campaign.ipynb here)'
  },
  bounce_review: {
    label: 'Bounce review', rank: 3, icon: bounceIcon,
    caption: 'Review bounces before addresses are suppressed (opens 03_bounce_review.ipynb here)'
  }
};

/** "Newsletter 45/500 today"; a click shows the sidebar. */
class StatusItem extends Widget {
  constructor(private model: StatusModel, onClick: () => void, private trans: TranslationBundle) {
    super();
    this.addClass('nk-lab-statusbar');
    this.addClass('jp-StatusBar-TextItem');
    this.node.title = trans.__("Newsletter: today's send quota (click for the sidebar)");
    this.node.addEventListener('click', onClick);
    this.model.changed.connect(this.update, this);
    this.update();
  }

  update(): void {
    const quota = this.model.status?.quota;
    const error = this.model.error ?? this.model.status?.error;
    if (error) {
      // Not the last figures: they may no longer be true.
      this.node.textContent = 'Newsletter: error';
      this.node.title = error;
      return;
    }
    this.node.title = 'Newsletter: today\'s send quota (click for the sidebar)';
    this.node.textContent = quota
      ? this.trans.__('Newsletter %1/%2 today', quota.used, quota.limit)
      : this.model.status ? this.trans.__('Newsletter: not set up') : this.trans.__('Newsletter');
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'newsletter-kit:plugin',
  description: 'Newsletter launcher cards, sidebar and status bar item for newsletter_kit.',
  autoStart: true,
  optional: [ILauncher, IStatusBar, IDefaultFileBrowser, ICommandPalette, ILayoutRestorer, ISettingRegistry,
    ITranslator],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    statusBar: IStatusBar | null,
    browser: IDefaultFileBrowser | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null
  ) => {
    const trans = (translator ?? nullTranslator).load('newsletter_kit');
    const model = new StatusModel();
    let showStatusBar = true;
    const statusBarChanged = new Signal<object, void>({});

    app.commands.addCommand(OPEN, {
      label: args => TEMPLATES[args.template as Template]?.label ?? 'Newsletter notebook',
      caption: args => TEMPLATES[args.template as Template]?.caption ?? '',
      icon: args => (args.isPalette ? undefined : TEMPLATES[args.template as Template]?.icon ?? newsletterIcon),
      execute: async args => {
        const template = args.template as Template;
        // The launcher passes its folder; the sidebar's buttons use the file browser's.
        const folder = typeof args.cwd === 'string' ? args.cwd : browser?.model.path ?? '';
        try {
          const path = await makeNotebook(template, folder);
          return await app.commands.execute('docmanager:open', { path });
        } catch (error) {
          void showErrorMessage('Newsletter', (error as Error).message || String(error));
        }
      }
    });

    const sidebar = new NewsletterSidebar(model, template =>
      void app.commands.execute(OPEN, { template }), trans);
    sidebar.title.icon = newsletterIcon;
    app.shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, sidebar.id);

    app.commands.addCommand(SHOW, {
      label: 'Show the Newsletter sidebar',
      execute: () => app.shell.activateById(sidebar.id)
    });
    app.commands.addCommand(REFRESH, {
      label: 'Refresh the Newsletter status',
      execute: () => model.refresh()
    });

    if (launcher) {
      for (const [template, { rank }] of Object.entries(TEMPLATES)) {
        launcher.add({ command: OPEN, args: { template }, category: 'Newsletter', rank });
      }
    }
    if (palette) {
      for (const template of Object.keys(TEMPLATES)) {
        palette.addItem({ command: OPEN, args: { template, isPalette: true }, category: 'Newsletter' });
      }
      palette.addItem({ command: SHOW, category: 'Newsletter' });
      palette.addItem({ command: REFRESH, category: 'Newsletter' });
    }
    if (statusBar) {
      const item = new StatusItem(model, () => void app.commands.execute(SHOW), trans);
      statusBar.registerStatusItem('newsletter-kit:status', {
        item, align: 'left', rank: 50, isActive: () => showStatusBar, activeStateChanged: statusBarChanged
      });
    }
    if (settingRegistry) {
      // The Settings Editor's "Newsletter" section (schema/plugin.json), applied as it changes.
      const apply = (settings: ISettingRegistry.ISettings): void => {
        model.interval = 1000 * (settings.get('refreshInterval').composite as number);
        showStatusBar = settings.get('showStatusBar').composite as boolean;
        statusBarChanged.emit();
        const store = (settings.get('store').composite as string).trim();
        if (store !== model.store) {
          model.store = store;
          void model.refresh();
        }
      };
      void settingRegistry.load(plugin.id).then(settings => {
        apply(settings);
        settings.changed.connect(apply);
      }).catch(reason => console.warn('newsletter-kit: settings not loaded', reason));
    }
  }
};

export default plugin;
