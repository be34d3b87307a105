'use strict';
// Launches Debian's chromium through playwright-core, with the flags this
// closed network needs and a fresh profile that is removed on close.
//
//   const { launch } = require('./chromium');
//   const b = await launch({ args: [...], env: {...}, caFiles: [...] });
//   const page = await b.context.newPage(); ... await b.close();
//
// CHROMIUM=/path/to/chromium overrides the binary.

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');
const { chromium } = require('playwright-core');

const FLAGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
];

function executable() {
    const exe = process.env.CHROMIUM || '/usr/bin/chromium';
    if (!fs.existsSync(exe)) {
        throw new Error(exe + ' not found (apt-get install chromium)');
    }
    return exe;
}

// base64(sha256(SubjectPublicKeyInfo)) of the first certificate in a PEM
// file: what --ignore-certificate-errors-spki-list wants.
function spkiHash(pemFile) {
    const cert = new crypto.X509Certificate(fs.readFileSync(pemFile));
    const der = cert.publicKey.export({ type: 'spki', format: 'der' });
    return crypto.createHash('sha256').update(der).digest('base64');
}

// Chromium on Linux trusts the CAs of the NSS database in $HOME/.pki/nssdb:
// make one in a private HOME holding only these CAs (certutil, Debian's
// libnss3-tools), so the server's chain and name are verified for real.
function nssHome(home, caFiles) {
    const db = path.join(home, '.pki', 'nssdb');
    fs.mkdirSync(db, { recursive: true });
    const certutil = (args) => execFileSync('certutil', args,
                                            { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
        certutil(['-N', '-d', 'sql:' + db, '--empty-password']);
    } catch (e) {
        if (e.code === 'ENOENT') {
            throw new Error('certutil not found (apt-get install libnss3-tools)');
        }
        throw new Error('certutil -N: ' + String(e.stderr || e.message).trim());
    }
    caFiles.forEach((f, i) => {
        // One PEM file may hold several certificates: add each.
        const pems = fs.readFileSync(f, 'utf8').match(
            /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g);
        if (!pems) throw new Error(f + ': no PEM certificate');
        pems.forEach((pem, j) => {
            const one = path.join(home, 'ca-' + i + '-' + j + '.pem');
            fs.writeFileSync(one, pem + '\n');
            try {
                certutil(['-A', '-d', 'sql:' + db, '-t', 'C,,',
                          '-n', 'esp-test-ca-' + i + '-' + j, '-i', one]);
            } catch (e) {
                throw new Error('certutil -A ' + f + ': '
                                + String(e.stderr || e.message).trim());
            }
        });
    });
}

async function launch(opts = {}) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'esp-chromium-'));
    const profile = path.join(tmp, 'profile');
    fs.mkdirSync(profile);
    const env = Object.assign({}, process.env, opts.env || {});
    let context;
    try {
        if (opts.caFiles && opts.caFiles.length) {
            const home = path.join(tmp, 'home');
            nssHome(home, opts.caFiles);
            env.HOME = home;
        }
        // launchPersistentContext() is playwright's way to pass
        // --user-data-dir: a brand-new directory, so no state leaks in.
        context = await chromium.launchPersistentContext(profile, {
            executablePath: executable(),
            headless: true,
            args: FLAGS.concat(opts.args || []),
            env,
            ignoreHTTPSErrors: false,
            viewport: opts.viewport || { width: 1280, height: 800 },
            deviceScaleFactor: opts.deviceScaleFactor || 1,
            locale: opts.locale || 'en-GB',
            timeout: 30000,
        });
    } catch (e) {
        fs.rmSync(tmp, { recursive: true, force: true });
        throw e;
    }
    return {
        context,
        tmp,
        async close() {
            try {
                await context.close();
            } finally {
                fs.rmSync(tmp, { recursive: true, force: true });
            }
        },
    };
}

module.exports = { launch, spkiHash, FLAGS };
