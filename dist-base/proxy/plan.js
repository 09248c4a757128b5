export function matchRoute(plan, url, host) {
    const routes = plan.routes;
    let hostLower = null;
    if (plan.hostRouting && host !== undefined) {
        const colon = host.lastIndexOf(':');
        hostLower = (colon > 0 && host.indexOf(']') < colon ? host.slice(0, colon) : host).toLowerCase();
    }
    for (let i = 0; i < routes.length; i++) {
        const r = routes[i];
        if (r.host !== null && r.host !== hostLower)
            continue;
        if (url.startsWith(r.pathPrefix))
            return r;
    }
    return null;
}
//# sourceMappingURL=plan.js.map