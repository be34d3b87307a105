#!/usr/bin/env node
'use strict';
// Enrols a second factor (esp_mfa totp, esp_mfa_enroll on) in headless
// Chromium as a person does, for t/049-mfa-enrol.t:
//
// node t/browser/mfa-enrol.js --url https://mail.contoso.com:PORT/owa/
//     --user U --password-file F --ca CA.pem --shots DIR [--timeout MS]
//
// Opens --url, signs in on the login form, expects the enrolment page (the
// QR code and the key), screenshots the page (01-enrol.png) and the QR code
// alone (qr.png); then prints one line "QR <path of qr.png> <key shown>"
// and reads one line from stdin: the code to type (the caller decodes the
// QR code and computes it). Types it, submits, expects to land on the
// page of --url (02-landing.png). Then one JSON line on stdout: ok, error,
// steps, the enrolment page's details (its CSP, whether the QR code is an
// inline SVG, what the page fetched). Exit 0 as expected, 1 otherwise.

delete process.env.DEBUG;

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { launch } = require('./chromium');

function arg(name, def) {
    const i = process.argv.indexOf(name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

async function main() {
    const url = new URL(arg('--url'));
    const user = arg('--user');
    const password = fs.readFileSync(arg('--password-file'), 'utf8')
                       .replace(/\r?\n$/, '');
    const ca = arg('--ca');
    const shots = arg('--shots');
    const timeout = Number(arg('--timeout', 20000));
    const scrub = (s) => String(s).split(password).join('***');
    const result = { ok: false, error: null, steps: [], fetched: [] };
    const done = (code) => {
        process.stdout.write(scrub(JSON.stringify(result)) + '\n');
        process.exit(code);
    };

    fs.mkdirSync(shots, { recursive: true });

    let b;
    try {
        b = await launch({
            args: ['--host-resolver-rules=MAP ' + url.hostname + ' 127.0.0.1',
                   '--no-proxy-server'],
            caFiles: [ca], locale: 'en-US',
            viewport: { width: 1280, height: 900 } });
    } catch (e) {
        result.error = 'cannot launch chromium: ' + e.message;
        done(2);
    }

    const page = await b.context.newPage();
    page.setDefaultTimeout(timeout);
    page.setDefaultNavigationTimeout(timeout);
    page.on('request', (r) => result.fetched.push(r.url()));

    try {
        await page.goto(url.href);
        await page.locator('input[name="username"]').fill(user);
        await page.locator('input[name="password"]').fill(password);
        const [resp] = await Promise.all([
            page.waitForNavigation(),
            page.locator('button[type="submit"]').click(),
        ]);
        result.steps.push({ name: 'enrol', url: page.url(),
                            status: resp.status() });
        result.csp = resp.headers()['content-security-policy'] || null;
        await page.locator('#enrol svg.qr').waitFor({ state: 'visible' });
        result.qr_is_svg = (await page.locator('#enrol svg.qr').count()) === 1;
        result.heading = await page.locator('h1').innerText();
        const key = (await page.locator('#secret').innerText()).trim();
        await page.screenshot({ path: path.join(shots, '01-enrol.png'),
                                fullPage: true });
        const qr = path.join(shots, 'qr.png');
        await page.locator('#enrol svg.qr').screenshot({ path: qr });
        result.fetched_on_enrol = result.fetched.slice();

        process.stdout.write('QR ' + qr + ' ' + key + '\n');
        const rl = readline.createInterface({ input: process.stdin });
        const code = await new Promise((res) => rl.once('line', res));
        rl.close();

        await page.locator('input[name="code"]').fill(code.trim());
        const [resp2] = await Promise.all([
            page.waitForNavigation({ url: (u) => u.pathname === url.pathname }),
            page.locator('button[type="submit"]').click(),
        ]);
        result.steps.push({ name: 'landing', url: page.url(),
                            status: resp2 ? resp2.status() : null,
                            title: await page.title() });
        await page.screenshot({ path: path.join(shots, '02-landing.png'),
                                fullPage: true });
        result.cookies = (await b.context.cookies()).map((c) => c.name);
        result.ok = true;
    } catch (e) {
        result.error = e.message;
        try {
            await page.screenshot({ path: path.join(shots, 'error.png'),
                                    fullPage: true });
        } catch (e2) { /* nothing more to show */ }
    }

    await b.close();
    done(result.ok ? 0 : 1);
}

main();
