#!/usr/bin/env node
'use strict';
// Drives a form login through ngx_exchange_esp in headless Chromium, the
// way a person would, and reports what happened as one JSON line.
//
// node t/browser/login-flow.js --url https://mail.contoso.com:PORT/owa/
//     --user U --password-file F (--ca CA.pem | --cert SERVER.pem)...
//     [--shots DIR] [--expect-text TEXT] [--private] [--logoff]
//     [--expect-login-error TEXT] [--logoff-selector CSS]
//     [--logoff-text TEXT] [--address IP] [--locale de-DE]
//     [--timeout MS]
//
// Steps: open --url, expect to land on the login form (after redirects),
// screenshot 01-login.png; fill user and password (read from the file,
// one trailing newline dropped, never printed), tick "private computer" if
// --private, submit; then either expect the landing page with --expect-text
// (02-landing.png), or, with --expect-login-error, expect the login form
// again with that message (02-login-error.png). With --logoff: click the
// logoff link (default: the first link whose href contains "logoff"),
// expect the signed-out page (03-signed-out.png), open --url again and
// expect the login form (04-after-logoff.png).
//
// Certificates are verified, never ignored. --ca FILE (repeatable) puts
// the CA(s) in a private NSS database that this Chromium alone uses (needs
// certutil, Debian's libnss3-tools): the full chain and the host name are
// checked. --cert FILE instead pins the server's own key with
// --ignore-certificate-errors-spki-list=<sha256 of its SPKI>. The URL's
// host name is mapped to --address (default 127.0.0.1) with
// --host-resolver-rules, so no DNS is needed.
//
// Output: one JSON line on stdout: ok, error, steps, final_url, titles,
// cookie names and attributes (never values), TLS details.
// Exit status: 0 as expected, 1 the flow failed, 2 usage or launch error.

delete process.env.DEBUG;   // playwright's debug log would show the password

const fs = require('fs');
const net = require('net');
const path = require('path');
const { launch, spkiHash } = require('./chromium');

function usage(msg) {
    if (msg) console.error('login-flow.js: ' + msg);
    console.error('usage: node login-flow.js --url URL --user U'
                  + ' --password-file F (--ca CA.pem | --cert SERVER.pem)'
                  + ' [--shots DIR] [--expect-text TEXT] [--private]'
                  + ' [--logoff] [--expect-login-error TEXT]'
                  + ' [--logoff-selector CSS] [--logoff-text TEXT]'
                  + ' [--address IP] [--locale LOCALE] [--timeout MS]');
    process.exit(2);
}

function parseArgs(argv) {
    const o = { ca: [], cert: [], address: '127.0.0.1', locale: 'en-US',
                timeout: 20000, private: false,
                logoff: false };
    const flags = { '--private': 'private', '--logoff': 'logoff' };
    const vals = {
        '--url': 'url', '--user': 'user', '--password-file': 'passwordFile',
        '--shots': 'shots', '--expect-text': 'expectText',
        '--expect-login-error': 'expectLoginError',
        '--logoff-selector': 'logoffSelector', '--logoff-text': 'logoffText',
        '--address': 'address', '--locale': 'locale', '--timeout': 'timeout',
    };
    for (let i = 0; i < argv.length; i++) {
        let a = argv[i], v;
        const eq = a.indexOf('=');
        if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
        const val = () => {
            if (v !== undefined) return v;
            if (i + 1 >= argv.length) usage(a + ' needs a value');
            return argv[++i];
        };
        if (a in flags) o[flags[a]] = true;
        else if (a === '--ca') o.ca.push(val());
        else if (a === '--cert') o.cert.push(val());
        else if (a in vals) o[vals[a]] = val();
        else if (a === '-h' || a === '--help') usage();
        else usage('unknown argument ' + a);
    }
    for (const k of ['url', 'user', 'passwordFile']) {
        if (!o[k]) usage('--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
                         + ' is required');
    }
    if (!o.ca.length && !o.cert.length) {
        usage('give --ca or --cert: certificates are always verified');
    }
    o.timeout = Number(o.timeout);
    if (!(o.timeout > 0)) usage('--timeout must be a positive number (ms)');
    try {
        o.u = new URL(o.url);
    } catch (e) {
        usage('--url is not a URL: ' + o.url);
    }
    if (!net.isIP(o.address)) usage('--address must be an IP address');
    if (o.expectLoginError !== undefined && o.logoff) {
        usage('--logoff makes no sense with --expect-login-error');
    }
    return o;
}

function readPassword(file) {
    let p;
    try {
        p = fs.readFileSync(file, 'utf8');
    } catch (e) {
        usage('cannot read --password-file: ' + e.code);
    }
    return p.replace(/\r?\n$/, '');
}

const LOGIN_FORM = 'form:has(input[name="username"]):has(input[name="password"])';

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const password = readPassword(o.passwordFile);
    const scrub = (s) => (password ? String(s).split(password).join('***')
                                   : String(s));
    const result = { ok: false, error: null, url: o.url, steps: [] };
    const done = (code) => {
        process.stdout.write(scrub(JSON.stringify(result)) + '\n');
        process.exit(code);
    };

    if (o.shots) fs.mkdirSync(o.shots, { recursive: true });
    const args = [];
    if (!net.isIP(o.u.hostname)) {
        args.push('--host-resolver-rules=MAP ' + o.u.hostname + ' ' + o.address);
    }
    args.push('--no-proxy-server');
    try {
        const pins = o.cert.map(spkiHash);
        if (pins.length) {
            args.push('--ignore-certificate-errors-spki-list=' + pins.join(','));
        }
    } catch (e) {
        usage('--cert: ' + e.message);
    }
    result.trust = o.ca.length ? 'ca' : 'spki-pin';

    let b;
    try {
        b = await launch({ args, caFiles: o.ca, locale: o.locale,
                           viewport: { width: 1280, height: 800 } });
    } catch (e) {
        result.error = 'cannot launch chromium: ' + e.message;
        done(2);
    }

    const page = await b.context.newPage();
    page.setDefaultTimeout(o.timeout);
    page.setDefaultNavigationTimeout(o.timeout);
    const origin = o.u.origin;
    result.foreign_requests = [];
    result.page_errors = [];
    page.on('request', (r) => {
        const u = r.url();
        if (!u.startsWith(origin + '/') && !u.startsWith('data:')
            && !u.startsWith('about:')) {
            result.foreign_requests.push(u);
        }
    });
    page.on('pageerror', (e) => result.page_errors.push(String(e.message)));

    // The redirect chain that ended in resp, oldest first.
    const chain = (resp) => {
        const out = [];
        let req = resp ? resp.request() : null;
        while (req) {
            const r = req.redirectedFrom();
            if (r) {
                out.unshift({ method: r.method(), url: r.url(),
                              status: 'redirect' });
            }
            req = r;
        }
        return out;
    };

    const isLogin = async () => (await page.locator(LOGIN_FORM).count()) > 0;

    const step = async (name, resp, shot) => {
        const s = { name, url: page.url(), title: await page.title() };
        if (resp) {
            s.status = resp.status();
            const redirects = chain(resp);
            if (redirects.length) s.redirects = redirects;
        }
        if (o.shots && shot) {
            s.screenshot = path.join(o.shots, shot);
            await page.screenshot({ path: s.screenshot, fullPage: true });
        }
        result.steps.push(s);
        return s;
    };

    const cookies = async () => (await b.context.cookies()).map((c) => ({
        name: c.name, domain: c.domain, path: c.path, httpOnly: c.httpOnly,
        secure: c.secure, sameSite: c.sameSite,
        session: c.expires === -1,
    }));

    const messageText = async () => {
        const m = page.locator('#msg, [role="alert"]').first();
        return (await m.count()) ? (await m.innerText()).trim() : '';
    };

    const fail = async (msg) => {
        result.error = msg;
        result.final_url = page.url();
        try {
            result.cookies = (await cookies()).map((c) => c.name);
            if (o.shots) {
                const f = path.join(o.shots, '99-failure.png');
                await page.screenshot({ path: f, fullPage: true });
                result.failure_screenshot = f;
            }
        } catch (e) { /* the page may be gone */ }
        await b.close().catch(() => {});
        done(1);
    };

    try {
        // 1. The protected URL must send us to the login form.
        let resp = await page.goto(o.url, { waitUntil: 'load' });
        if (!resp) await fail('no response for ' + o.url);
        const tls = await resp.securityDetails();
        if (tls) {
            result.tls = { protocol: tls.protocol, subject: tls.subjectName,
                           issuer: tls.issuer };
        }
        const login = await step('login-form', resp, '01-login.png');
        result.login_url = login.url;
        result.login_title = login.title;
        if (!await isLogin()) {
            await fail('expected the login form, got status ' + login.status
                       + ' at ' + login.url);
        }
        const form = page.locator(LOGIN_FORM).first();
        result.login_form = await form.evaluate((f) => ({
            method: (f.getAttribute('method') || 'get').toLowerCase(),
            action: f.getAttribute('action'),
            enctype: f.enctype,
            fields: Array.from(f.elements).filter((e) => e.name)
                .map((e) => e.name + ':' + e.type)
                .filter((v, i, a) => a.indexOf(v) === i),
            public_private: !!f.querySelector('input[name="trusted"]'),
        }));
        if (result.login_form.method !== 'post') {
            await fail('the login form does not POST');
        }

        // 2. Fill in and submit.
        await form.locator('input[name="username"]').fill(o.user);
        await form.locator('input[name="password"]').fill(password);
        if (o.private) {
            const r = form.locator('input[name="trusted"][value="1"]');
            if (!(await r.count())) {
                await fail('--private: the form offers no private-computer choice');
            }
            await r.check();
        }
        const submit = form.locator('button[type="submit"], input[type="submit"],'
                                    + ' button:not([type])').first();
        const [resp2] = await Promise.all([
            page.waitForNavigation({ waitUntil: 'load' }),
            submit.click(),
        ]);
        resp = resp2;

        if (o.expectLoginError !== undefined) {
            const s = await step('login-error', resp, '02-login-error.png');
            if (!await isLogin()) {
                await fail('expected the login form again, got ' + s.url);
            }
            result.message = await messageText();
            if (!result.message.includes(o.expectLoginError)) {
                await fail('login message does not contain "'
                           + o.expectLoginError + '"');
            }
            const pf = await page.locator(LOGIN_FORM)
                .locator('input[name="password"]').inputValue();
            if (pf !== '') await fail('the password field came back filled in');
        } else {
            if (await isLogin()) {
                result.message = await messageText();
                await step('login-failed', resp, '02-login-failed.png');
                await fail('still on the login form after submitting: "'
                           + result.message + '"');
            }
            if (o.expectText !== undefined) {
                try {
                    await page.waitForFunction(
                        (t) => document.body && document.body.innerText.includes(t),
                        o.expectText, { timeout: o.timeout });
                } catch (e) {
                    await step('landing', resp, '02-landing.png');
                    await fail('landing page does not contain "' + o.expectText + '"');
                }
            }
            const land = await step('landing', resp, '02-landing.png');
            result.landing_url = land.url;
            result.landing_title = land.title;
        }
        result.cookie_attrs = await cookies();
        result.cookies = result.cookie_attrs.map((c) => c.name);

        // 3. Log off, and the session must be gone.
        if (o.logoff) {
            const link = o.logoffSelector
                ? page.locator(o.logoffSelector).first()
                : page.locator('a[href*="logoff" i]').first();
            if (!(await link.count())) await fail('no logoff link found');
            const [resp3] = await Promise.all([
                page.waitForNavigation({ waitUntil: 'load' }),
                link.click(),
            ]);
            const out = await step('signed-out', resp3, '03-signed-out.png');
            result.logoff_url = out.url;
            result.logoff_title = out.title;
            const text = await page.locator('body').innerText();
            const want = o.logoffText !== undefined ? [o.logoffText]
                : ['You have signed out', 'Sie haben sich abgemeldet'];
            if (!want.some((t) => text.includes(t))) {
                await fail('signed-out page does not say "' + want.join('" or "') + '"');
            }
            result.cookies_after_logoff = (await cookies()).map((c) => c.name);

            const resp4 = await page.goto(o.url, { waitUntil: 'load' });
            const again = await step('after-logoff', resp4, '04-after-logoff.png');
            if (!await isLogin()) {
                await fail('after logoff ' + o.url + ' did not lead to the login'
                           + ' form (got ' + again.url + ')');
            }
        }
        result.final_url = page.url();
        if (result.foreign_requests.length) {
            await fail('the pages fetched from other origins');
        }
        result.ok = true;
    } catch (e) {
        await fail(String(e && e.message || e).split('\n')[0]);
    }
    await b.close();
    done(0);
}

main().catch((e) => {
    console.error('login-flow.js: ' + (e && e.stack || e));
    process.exit(2);
});
