#!/usr/bin/env node
'use strict';
// Renders the login/logout templates with sample values and saves
// screenshots, so a person can look at them; also checks each rendering:
// no placeholder left unfilled, nothing fetched from anywhere, and no
// WCAG 2.1 A/AA violation found by axe-core.
//
// Usage: node t/browser/render.js [--out DIR] [--templates DIR]
//            [--only NAME-SUBSTRING]
// Defaults: --out /tmp/esp-shots, --templates <repo>/templates.
// Texts come from the tables in templates/README.md.
// Exit status: 0 all good, 1 a check failed, 2 usage or launch error.

const fs = require('fs');
const os = require('os');
const path = require('path');
const { launch } = require('./chromium');

const REPO = path.resolve(__dirname, '..', '..');

function usage(msg) {
    if (msg) console.error('render.js: ' + msg);
    console.error('usage: node render.js [--out DIR] [--templates DIR]'
                  + ' [--only SUBSTRING]');
    process.exit(2);
}

function parseArgs(argv) {
    const o = { out: '/tmp/esp-shots', templates: path.join(REPO, 'templates'),
                only: '' };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const v = () => (i + 1 < argv.length ? argv[++i] : usage(a + ' needs a value'));
        if (a === '--out') o.out = v();
        else if (a === '--templates') o.templates = v();
        else if (a === '--only') o.only = v();
        else if (a === '-h' || a === '--help') usage();
        else usage('unknown argument ' + a);
    }
    return o;
}

// Rows "| `key` | ... | English | German |" of templates/README.md.
function readTexts(readme) {
    const en = {}, de = {};
    for (const line of fs.readFileSync(readme, 'utf8').split('\n')) {
        const m = line.match(/^\|\s*`([a-z0-9_]+)`\s*\|(.*)\|\s*$/);
        if (!m) continue;
        const cells = m[2].split('|').map((s) => s.trim());
        if (cells.length < 2) continue;
        en[m[1]] = cells[cells.length - 2];
        de[m[1]] = cells[cells.length - 1];
    }
    return { en, de };
}

function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({
        '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\'': '&#39;',
    }[c]));
}

// The module's substitution: every value escaped, public_private raw.
function fill(tpl, vals) {
    return tpl.replace(/\{\{([a-z0-9_]+)\}\}/g, (all, name) => {
        if (!(name in vals)) throw new Error('no value for {{' + name + '}}');
        return name === 'public_private' ? vals[name] : esc(vals[name]);
    });
}

function pages(dir, texts) {
    const login = fs.readFileSync(path.join(dir, 'login.html'), 'utf8');
    const logout = fs.readFileSync(path.join(dir, 'logout.html'), 'utf8');
    const pp = fs.readFileSync(path.join(dir, 'public_private.html'), 'utf8');
    const out = [];

    for (const lang of ['en', 'de']) {
        const t = texts[lang];
        const base = Object.assign({}, t, {
            lang, title: 'Outlook',
            action: '/esp_auth/login', url: '/owa/#path=/mail',
            csrf: 'x7Qm2vR9kT4pL8sW1nB6cY3dF0gH5jZa',
        });
        base.public_private = fill(pp, base);
        out.push({
            name: 'login-' + lang,
            html: fill(login, Object.assign({}, base, {
                greeting: '', username: '', message: '',
                message_class: 'msg hidden',
            })),
        });
        out.push({
            name: 'login-' + lang + '-error',
            html: fill(login, Object.assign({}, base, {
                greeting: lang === 'de'
                    ? 'Willkommen bei Contoso Mail. Bei Fragen: Servicedesk, '
                      + 'Durchwahl 4711.'
                    : 'Welcome to Contoso Mail. Questions? Call the service '
                      + 'desk on extension 4711.',
                username: 'CONTOSO\\j.o\'brien "test" <b>',
                message: lang === 'de' ? t.msg_blocked : t.msg_bad_credentials,
                message_class: 'msg',
            })),
        });
        out.push({
            name: 'login-' + lang + '-info-nopp',
            html: fill(login, Object.assign({}, base, {
                greeting: '', username: 'anna.schmidt@contoso.com',
                message: t.msg_session_expired, message_class: 'msg info',
                public_private: '', t_footer: '',
            })),
        });
        out.push({
            name: 'logout-' + lang,
            html: fill(logout, Object.assign({}, t, {
                lang, title: 'Outlook', t_heading: t.t_logout_heading,
                t_text: t.t_logout_text, login_url: '/owa/',
            })),
        });
    }
    return out;
}

const VIEWS = [
    { tag: 'desktop', viewport: { width: 1280, height: 800 }, scheme: 'light' },
    { tag: 'phone', viewport: { width: 390, height: 844 }, scheme: 'light' },
    { tag: 'desktop-dark', viewport: { width: 1280, height: 800 },
      scheme: 'dark' },
    { tag: 'phone-dark', viewport: { width: 390, height: 844 },
      scheme: 'dark' },
    { tag: 'narrow', viewport: { width: 360, height: 740 }, scheme: 'light' },
    // Keyboard use: Tab to the radio group (or the link); to the button.
    { tag: 'keys', viewport: { width: 1280, height: 800 }, scheme: 'light',
      keys: ['radio', 'submit', 'A'] },
    { tag: 'keys-dark', viewport: { width: 1280, height: 800 },
      scheme: 'dark', keys: ['submit', 'A'] },
];

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const texts = readTexts(path.join(o.templates, 'README.md'));
    if (!texts.en.t_heading) usage('no texts found in templates/README.md');
    const list = pages(o.templates, texts)
        .filter((p) => !o.only || p.name.includes(o.only));
    fs.mkdirSync(o.out, { recursive: true });
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'esp-render-'));
    const axe = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
    let failed = 0;

    let b;
    try {
        b = await launch();
    } catch (e) {
        console.error('render.js: cannot launch chromium: ' + e.message);
        process.exit(2);
    }
    try {
        for (const p of list) {
            const file = path.join(work, p.name + '.html');
            fs.writeFileSync(file, p.html);
            const left = p.html.match(/\{\{[a-z0-9_]+\}\}/g);
            if (left) {
                console.log('FAIL ' + p.name + ': unfilled ' + left.join(' '));
                failed++;
            }
            for (const v of VIEWS) {
                const page = await b.context.newPage();
                const foreign = [];
                page.on('request', (r) => {
                    if (!r.url().startsWith('file://')) foreign.push(r.url());
                });
                await page.setViewportSize(v.viewport);
                await page.emulateMedia({ colorScheme: v.scheme,
                                          reducedMotion: 'reduce' });
                await page.goto('file://' + file);
                if (v.keys) {
                    // Tab until the submit button (or link) has the focus.
                    for (let k = 0; k < 10; k++) {
                        await page.keyboard.press('Tab');
                        const on = await page.evaluate((want) => {
                            const e = document.activeElement;
                            return e && (want.includes(e.type)
                                         || want.includes(e.tagName));
                        }, v.keys);
                        if (on) break;
                    }
                }
                const shot = path.join(o.out, p.name + '-' + v.tag + '.png');
                await page.screenshot({ path: shot, fullPage: true });
                if (foreign.length) {
                    console.log('FAIL ' + p.name + ': fetched ' + foreign.join(' '));
                    failed++;
                }
                const wide = await page.evaluate(
                    () => document.documentElement.scrollWidth
                          > window.innerWidth);
                if (wide) {
                    console.log('FAIL ' + p.name + '-' + v.tag
                                + ': scrolls sideways');
                    failed++;
                }
                if (v.tag === 'desktop' || v.tag === 'desktop-dark'
                    || v.tag === 'narrow') {
                    await page.addScriptTag({ content: axe });
                    const r = await page.evaluate(() => window.axe.run(document, {
                        runOnly: { type: 'tag',
                                   values: ['wcag2a', 'wcag2aa', 'wcag21a',
                                            'wcag21aa', 'best-practice'] },
                    }));
                    for (const x of r.violations) {
                        console.log('FAIL ' + p.name + '-' + v.tag + ': axe '
                                    + x.id + ' (' + x.help + '): '
                                    + x.nodes.map((n) => n.target.join(' '))
                                        .join(', '));
                        failed++;
                    }
                }
                await page.close();
                console.log('ok   ' + shot);
            }
        }
    } finally {
        await b.close();
        fs.rmSync(work, { recursive: true, force: true });
    }
    if (failed) {
        console.log(failed + ' check(s) failed');
        process.exit(1);
    }
}

main().catch((e) => {
    console.error('render.js: ' + (e && e.stack || e));
    process.exit(2);
});
