/// The portal's pages (Mustache: `{{x}}` is HTML-escaped, `{{{content}}}` is the page a layout
/// wraps), its style sheet and its one script. Kept in the program, not beside it: an installed
/// tcu-backend serves the portal with nothing else to find. Plain HTML forms that work without
/// JavaScript and without a mouse (every field has its label, the order of the page is the order
/// of the tab key); the script only adds alerts to the list as they come.
enum Templates {
    static let pages: [String: String] = [
        "layout": """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            {{#refresh}}<meta http-equiv="refresh" content="{{refresh}}">{{/refresh}}
            <title>{{title}} · MySEAT portal</title>
            <link rel="stylesheet" href="/static/portal.css">
            {{#liveAlerts}}<script src="/static/portal.js" defer></script>{{/liveAlerts}}
            </head>
            <body>
            <a class="skip" href="#main">Skip to the content</a>
            <header>
            <p class="brand">MySEAT portal <small>· SEAT CONNECT (tcu-backend, a simulator)</small></p>
            <nav aria-label="Main">
            {{#signedIn}}<a href="/garage">Garage</a> <a href="/account">Account</a> <a href="/support">Support</a>
            <form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button id="sign-out">Sign out</button></form>{{/signedIn}}
            {{^signedIn}}<a href="/login">Log in</a> <a href="/signup">Sign up</a> <a href="/support">Support</a>{{/signedIn}}
            </nav>
            </header>
            <main id="main">
            <h1>{{title}}</h1>
            {{#error}}<p class="error" role="alert" id="error">{{error}}</p>{{/error}}
            {{#notice}}<p class="notice" role="status" id="notice">{{notice}}</p>{{/notice}}
            {{{content}}}
            </main>
            </body>
            </html>
            """,
        "login": """
            <form method="post" action="/login">
            <label for="login">E-mail address, user name or mobile number</label>
            <input id="login" name="login" required autocomplete="username" value="{{login}}" autofocus>
            <label for="password">Password</label>
            <input id="password" name="password" type="password" required autocomplete="current-password">
            <label for="idleMinutes">Ask for the password again after</label>
            <select id="idleMinutes" name="idleMinutes">
            <option value="">the session's end (an hour)</option>
            <option value="5">5 minutes without use</option>
            <option value="10">10 minutes without use</option>
            <option value="15">15 minutes without use</option>
            </select>
            <button id="log-in">Log in</button>
            </form>
            <p><a href="/signup">Create an account</a> · <a href="/forgot">Forgotten password</a></p>
            """,
        "signup": """
            <form method="post" action="/signup">
            <label for="email">E-mail address</label>
            <input id="email" name="email" type="email" required autocomplete="email" value="{{form.email}}" autofocus>
            <label for="userName">User name (optional: 3 to 32 letters a-z, digits, '.', '_' or '-')</label>
            <input id="userName" name="userName" autocomplete="nickname" value="{{form.userName}}">
            <label for="mobile">Mobile number (optional, international: +34 600 111 222)</label>
            <input id="mobile" name="mobile" type="tel" autocomplete="tel" value="{{form.mobile}}">
            <label for="password">Password (at least 10 characters)</label>
            <input id="password" name="password" type="password" required minlength="10" autocomplete="new-password">
            <label for="spin">S-PIN (4 digits: it protects locking, unlocking and the climatisation from afar)</label>
            <input id="spin" name="spin" type="password" required inputmode="numeric" pattern="[0-9]{4}" autocomplete="off">
            <button id="sign-up">Create the account</button>
            </form>
            """,
        "message": """
            <p id="message">{{message}}</p>
            {{#next}}<p><a id="next" href="{{href}}">{{label}}</a></p>{{/next}}
            """,
        "forgot": """
            <form method="post" action="/forgot">
            <label for="login">E-mail address, user name or mobile number</label>
            <input id="login" name="login" required autocomplete="username" autofocus>
            <button id="send-link">Send me a link</button>
            </form>
            """,
        "reset": """
            <form method="post" action="/reset-password">
            <input type="hidden" name="token" value="{{token}}">
            <label for="newPassword">New password (at least 10 characters)</label>
            <input id="newPassword" name="newPassword" type="password" required minlength="10" autocomplete="new-password" autofocus>
            <button id="set-password">Set the password</button>
            </form>
            """,
        "garage": """
            <section aria-labelledby="cars-title">
            <h2 id="cars-title">My cars</h2>
            {{#hasCars}}
            <table id="cars">
            <thead><tr><th scope="col">VIN</th><th scope="col">Model</th><th scope="col">My role</th><th scope="col">Registration</th><th scope="col">Licence</th></tr></thead>
            <tbody>
            {{#cars}}<tr><td><a href="/garage/{{vin}}">{{vin}}</a></td><td>{{model}}</td><td>{{role}}</td><td class="enrolment">{{enrolment}}</td><td>{{licence}}</td></tr>
            {{/cars}}
            </tbody>
            </table>
            {{/hasCars}}
            {{^hasCars}}<p>No car yet: add yours below, then type its pairing code in the car.</p>{{/hasCars}}
            </section>
            <section aria-labelledby="add-title">
            <h2 id="add-title">Add a car</h2>
            <form method="post" action="/garage">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <label for="vin">VIN (17 characters, on the registration document)</label>
            <input id="vin" name="vin" required minlength="17" maxlength="17" autocomplete="off" value="{{form.vin}}">
            <label for="model">Model</label>
            <select id="model" name="model">{{#models}}<option{{#selected}} selected{{/selected}}>{{name}}</option>{{/models}}</select>
            <label for="built">Built (year and month, YYYY-MM)</label>
            <input id="built" name="built" required pattern="[0-9]{4}-[0-9]{2}(-[0-9]{2})?" placeholder="2021-03" value="{{form.built}}">
            <label for="country">Country</label>
            <select id="country" name="country">{{#countries}}<option value="{{code}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/countries}}</select>
            <label class="check"><input type="checkbox" id="acceptTerms" name="acceptTerms" value="yes"> I accept the terms of use of SEAT CONNECT and its privacy policy</label>
            <button id="add-car">Add the car</button>
            </form>
            </section>
            {{>alerts}}
            """,
        "alerts": """
            <section aria-labelledby="alerts-title">
            <h2 id="alerts-title">Alerts</h2>
            <p class="hint">New alerts appear here as they come (reload the page without JavaScript).</p>
            <ol id="alerts" data-stream="/alerts/stream" data-last="{{lastAlert}}" aria-live="polite" reversed>
            {{#alerts}}<li data-id="{{id}}"><time>{{at}}</time> <strong>{{kind}}</strong> {{vin}}{{#text}} · {{text}}{{/text}}</li>
            {{/alerts}}
            </ol>
            </section>
            """,
        "car": """
            {{#code}}
            <section aria-labelledby="pairing-title" class="pairing">
            <h2 id="pairing-title">Pairing code</h2>
            <p>In the car: Settings → Online services → Registration, and type this code:</p>
            <p class="code" id="pairing-code">{{code}}</p>
            <p class="hint">Valid until {{codeExpires}}. Registration: <span class="enrolment">{{enrolment}}</span>.</p>
            </section>
            {{/code}}
            {{^code}}<p>Registration: <strong class="enrolment" id="enrolment">{{enrolment}}</strong> · my role: {{role}}</p>{{/code}}
            <section aria-labelledby="status-title">
            <h2 id="status-title">Status</h2>
            {{#statusError}}<p class="error">{{statusError}}</p>{{/statusError}}
            <dl class="status" id="summary">{{#summary}}<dt>{{label}}</dt><dd>{{value}}</dd>{{/summary}}{{#parking}}<dt>Parking position</dt><dd id="parking">{{parking}}</dd>{{/parking}}</dl>
            {{#hasBlocks}}<details id="blocks"><summary>Everything the car reported</summary>
            {{#blocks}}
            <h3>{{name}} <small>as of {{capturedAt}}</small></h3>
            <dl class="status" id="block-{{name}}">{{#values}}<dt>{{key}}</dt><dd>{{value}}</dd>{{/values}}</dl>
            {{/blocks}}
            </details>{{/hasBlocks}}
            </section>
            {{#primary}}
            {{#registered}}
            <section aria-labelledby="remote-title">
            <h2 id="remote-title">Remote functions</h2>
            <p class="hint">Locking, unlocking and the climatisation need your S-PIN.</p>
            <form method="post" action="/garage/{{vin}}/actions" class="remote">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <label for="spin">S-PIN</label>
            <input id="spin" name="spin" type="password" inputmode="numeric" pattern="[0-9]{4}" autocomplete="off">
            <label for="targetTemperature">Climatisation temperature (16 to 30 °C)</label>
            <input id="targetTemperature" name="targetTemperature" type="number" min="16" max="30" step="0.5" value="21">
            <p class="buttons">
            <button name="action" value="lock" id="lock">Lock</button>
            <button name="action" value="unlock" id="unlock">Unlock</button>
            <button name="action" value="climatisation-start" id="climatisation-start">Start the climatisation</button>
            <button name="action" value="climatisation-stop" id="climatisation-stop">Stop the climatisation</button>
            <button name="action" value="honkandflash" id="honkandflash">Honk and flash</button>
            <button name="action" value="flash" id="flash">Flash</button>
            </p>
            </form>
            </section>
            {{/registered}}
            <section aria-labelledby="licence-title">
            <h2 id="licence-title">Licence</h2>
            {{#licence}}<p id="licence">{{package}}, until {{expires}}. Services: {{services}}.</p>{{/licence}}
            {{^licence}}<p id="licence">None yet: the free trial starts when the car is registered.</p>{{/licence}}
            <form method="post" action="/garage/{{vin}}/licence">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <fieldset><legend>Renew</legend>
            {{#offers}}<label class="check"><input type="radio" name="offer" value="{{value}}"{{#first}} checked{{/first}}> {{label}}</label>
            {{/offers}}
            </fieldset>
            <button id="renew">Renew</button>
            </form>
            </section>
            <section aria-labelledby="privacy-title">
            <h2 id="privacy-title">Privacy</h2>
            <p id="privacy">{{privacy}}</p>
            <p class="hint">The privacy level is chosen in the car (Settings → Online services → Privacy); the eCall works whatever it is.</p>
            </section>
            <section aria-labelledby="users-title">
            <h2 id="users-title">Users</h2>
            <ul id="users">{{#users}}<li>{{user}} ({{role}})</li>{{/users}}</ul>
            <form method="post" action="/garage/{{vin}}/users">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <label for="share-email">Share with (their account's e-mail address)</label>
            <input id="share-email" name="email" type="email" required>
            <label for="share-role">As</label>
            <select id="share-role" name="role"><option value="secondary">secondary user (sees the car)</option><option value="guest">guest (the status only)</option></select>
            <button id="share">Share</button>
            </form>
            </section>
            <section aria-labelledby="remove-title">
            <h2 id="remove-title">Remove the car</h2>
            <form method="post" action="/garage/{{vin}}/remove">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <p class="hint">The pairing code stops working; add the car again for a new one.</p>
            <button id="remove">Remove {{vin}} from my garage</button>
            </form>
            </section>
            {{/primary}}
            """,
        "request": """
            <p>{{action}} for {{vin}}: <strong id="request-status">{{status}}</strong>{{#cause}} ({{cause}}){{/cause}}</p>
            {{#pending}}<p class="hint">The car has not answered yet: this page looks again every two seconds.</p>{{/pending}}
            <p><a href="/garage/{{vin}}">Back to the car</a></p>
            """,
        "account": """
            <section aria-labelledby="password-title">
            <h2 id="password-title">Change the password</h2>
            <p class="hint">Every device signed in to the account, this one too, asks for the new password.</p>
            <form method="post" action="/account/password">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <label for="current">Current password</label>
            <input id="current" name="password" type="password" required autocomplete="current-password">
            <label for="new">New password (at least 10 characters)</label>
            <input id="new" name="newPassword" type="password" required minlength="10" autocomplete="new-password">
            <button id="change-password">Change the password</button>
            </form>
            </section>
            <section aria-labelledby="sessions-title">
            <h2 id="sessions-title">Signed-in devices</h2>
            <table id="sessions">
            <thead><tr><th scope="col">Since</th><th scope="col">Last used</th><th scope="col">Idle limit</th><th scope="col"></th></tr></thead>
            <tbody>
            {{#sessions}}<tr><td>{{since}}</td><td>{{lastUsed}}</td><td>{{idle}}</td><td>{{#current}}this device{{/current}}{{^current}}
            <form method="post" action="/account/sessions/{{id}}/end" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button>Sign it out</button></form>{{/current}}</td></tr>
            {{/sessions}}
            </tbody>
            </table>
            </section>
            <section aria-labelledby="delete-title">
            <h2 id="delete-title">Delete my data</h2>
            <p class="hint">The account goes, with everything the server keeps that names you: the cars you are the primary user of leave
            the garage and their data on the server is deleted (their licence stays with the car). This cannot be undone.</p>
            <form method="post" action="/account/delete">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <label for="delete-password">Password</label>
            <input id="delete-password" name="password" type="password" required autocomplete="current-password">
            <label class="check"><input type="checkbox" id="confirm-delete" name="confirm" value="yes" required> I want my account and my data deleted</label>
            <button id="delete-account">Delete my account and my data</button>
            </form>
            </section>
            """,
        "support": """
            <p>For any question about SEAT CONNECT: <a href="mailto:{{email}}">{{email}}</a>, or call {{phone}} ({{hours}}).</p>
            """,
    ]

    static let css = """
        body { font-family: system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #f6f6f4; line-height: 1.4; }
        header { background: #1f1f1f; color: #fff; padding: .6rem 1.2rem; display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between; }
        header a, header button { color: #fff; margin-right: .8rem; }
        header button { background: none; border: 1px solid #fff; padding: .2rem .6rem; cursor: pointer; }
        .brand { font-weight: 700; margin: 0; }
        main { max-width: 56rem; margin: 1rem auto; padding: 0 1.2rem 3rem; }
        section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .4rem 1.2rem 1rem; margin: 1rem 0; }
        label { display: block; margin-top: .7rem; font-weight: 600; }
        label.check { font-weight: 400; }
        input, select, button { font: inherit; padding: .35rem .5rem; }
        input:not([type=checkbox]):not([type=radio]), select { width: 100%; max-width: 28rem; box-sizing: border-box; }
        button { margin-top: .8rem; background: #e1573a; color: #fff; border: none; border-radius: 4px; cursor: pointer; }
        :focus-visible { outline: 3px solid #1565c0; outline-offset: 2px; }
        .inline { display: inline; }
        .buttons button { margin-right: .4rem; }
        .error { background: #fdecea; border-left: 4px solid #c62828; padding: .5rem .8rem; }
        .notice { background: #e8f5e9; border-left: 4px solid #2e7d32; padding: .5rem .8rem; }
        .hint { color: #555; font-size: .92rem; }
        .code { font-size: 2rem; letter-spacing: .3rem; font-family: ui-monospace, monospace; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #eee; }
        dl.status { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; }
        dd { margin: 0; }
        .skip { position: absolute; left: -999px; }
        .skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .4rem; }
        """

    /// The live alerts: an EventSource on the page's stream (the session cookie goes with it),
    /// each alert added to the top of the list once.
    static let script = """
        "use strict";
        (function () {
          var list = document.getElementById("alerts");
          if (!list || !window.EventSource) { return; }
          var source = new EventSource(list.dataset.stream + "?after=" + encodeURIComponent(list.dataset.last || "0"));
          function show(event) {
            if (list.querySelector('li[data-id="' + event.lastEventId + '"]')) { return; }
            var alert = JSON.parse(event.data);
            var item = document.createElement("li");
            item.dataset.id = event.lastEventId;
            var when = document.createElement("time");
            when.textContent = new Date(alert.at).toISOString().slice(0, 16).replace("T", " ") + " UTC";
            var kind = document.createElement("strong");
            kind.textContent = alert.kind;
            // The alert's own fields, as the server writes them (WebPortal.describe).
            var details = Object.keys(alert).filter(function (k) { return ["id", "vin", "kind", "at", "capturedAt"].indexOf(k) < 0; })
              .map(function (k) { return k + ": " + (Array.isArray(alert[k]) ? alert[k].join(", ") : alert[k]); }).join(" · ");
            item.append(when, " ", kind, " " + alert.vin + (details ? " · " + details : ""));
            list.prepend(item);
          }
          ["theftAlarm", "locked", "unlocked", "openedWhileLocked", "commandResult", "eCallPlaced", "licenceExpiring"].forEach(function (kind) {
            source.addEventListener(kind, show);
          });
        })();
        """
}
