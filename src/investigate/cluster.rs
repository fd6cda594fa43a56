//! Clusters of accounts: union-find over accounts, linked when they share a JA4 or a subnet —
//! except through "hubs", a JA4 or subnet seen with more than `max_link_degree` distinct
//! accounts (an official SDK's fingerprint, an enterprise NAT or carrier range), which would
//! otherwise merge unrelated customers into one cluster. Hubs are reported, not linked through.

use std::collections::HashMap;

use super::aggregate::{sort_counts, unpack, Aggregator, Interner};
use super::report::{Cluster, Clusters, CountRow, Hub};

const NONE: u32 = u32::MAX;
/// Top JA4s, subnets and rules listed per cluster.
const PER_CLUSTER: usize = 5;

/// Union-find with path halving and union by size.
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    pub fn union(&mut self, a: u32, b: u32) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
    }

    pub fn size_of(&mut self, x: u32) -> u32 {
        let r = self.find(x);
        self.size[r as usize]
    }
}

/// Links accounts through each key of `pairs` whose distinct-account degree is within `max`;
/// returns the hubs (key id, degree) that were skipped.
fn link(uf: &mut UnionFind, pairs: &HashMap<u64, u32>, keys: usize, max: usize) -> Vec<(u32, u64)> {
    let mut degree = vec![0u64; keys];
    for &k in pairs.keys() {
        degree[unpack(k).0 as usize] += 1;
    }
    let is_hub = |d: u64| max > 0 && d > max as u64;
    let mut first = vec![NONE; keys];
    for &k in pairs.keys() {
        let (key, account) = unpack(k);
        if is_hub(degree[key as usize]) {
            continue;
        }
        match first[key as usize] {
            NONE => first[key as usize] = account,
            f => uf.union(f, account),
        }
    }
    degree
        .iter()
        .enumerate()
        .filter(|(_, &d)| is_hub(d))
        .map(|(k, &d)| (k as u32, d))
        .collect()
}

/// The cluster section of the report: the `top` largest clusters in detail.
pub(crate) fn build(agg: &Aggregator, max_link_degree: usize, top: usize) -> Clusters {
    let n = agg.accounts.len();
    let mut uf = UnionFind::new(n);
    let ja4_hubs = link(&mut uf, &agg.ja4_acct, agg.ja4s.len(), max_link_degree);
    let subnet_hubs = link(
        &mut uf,
        &agg.subnet_acct,
        agg.subnets.len(),
        max_link_degree,
    );

    let mut hubs: Vec<Hub> = ja4_hubs
        .iter()
        .map(|&(k, d)| Hub {
            kind: "ja4".into(),
            value: agg.ja4s.get(k).to_string(),
            accounts: d,
        })
        .chain(subnet_hubs.iter().map(|&(k, d)| Hub {
            kind: "subnet".into(),
            value: agg.subnets.get(k).to_string(),
            accounts: d,
        }))
        .collect();
    hubs.sort_by(|a, b| (b.accounts, &a.kind, &a.value).cmp(&(a.accounts, &b.kind, &b.value)));
    hubs.truncate(top);

    // Roots of clusters with two or more accounts, with their record counts.
    let mut roots: HashMap<u32, (u32, u64)> = HashMap::new();
    for a in 0..n as u32 {
        if uf.size_of(a) < 2 {
            continue;
        }
        let r = uf.find(a);
        let size = uf.size_of(r);
        let e = roots.entry(r).or_insert((size, 0));
        e.1 += agg.account_records.get(a as usize).copied().unwrap_or(0);
    }
    let total = roots.len() as u64;
    let accounts_in_clusters = roots.values().map(|&(s, _)| u64::from(s)).sum();
    // Largest first; ties by records, then by the smallest account name (deterministic).
    let mut smallest: HashMap<u32, &str> = HashMap::new();
    for a in 0..n as u32 {
        let r = uf.find(a);
        if roots.contains_key(&r) {
            let name = agg.accounts.get(a);
            let e = smallest.entry(r).or_insert(name);
            if name < *e {
                *e = name;
            }
        }
    }
    let mut order: Vec<(u32, u32, u64)> = roots.iter().map(|(&r, &(s, n))| (r, s, n)).collect();
    order.sort_by(|a, b| (b.1, b.2, smallest.get(&a.0)).cmp(&(a.1, a.2, smallest.get(&b.0))));
    order.truncate(top);
    let rank: HashMap<u32, usize> = order.iter().enumerate().map(|(i, o)| (o.0, i)).collect();

    let mut detail: Vec<Detail> = (0..order.len()).map(|_| Detail::default()).collect();
    let mut tally = |pairs: &HashMap<u64, u32>, pick: fn(&mut Detail) -> &mut HashMap<u32, u64>| {
        for (&k, &c) in pairs {
            let (key, account) = unpack(k);
            if let Some(&i) = rank.get(&uf.find(account)) {
                *pick(&mut detail[i]).entry(key).or_default() += u64::from(c);
            }
        }
    };
    tally(&agg.ja4_acct, |d| &mut d.ja4);
    tally(&agg.subnet_acct, |d| &mut d.subnets);
    tally(&agg.rule_acct, |d| &mut d.rules);
    for a in 0..n as u32 {
        if let Some(&i) = rank.get(&uf.find(a)) {
            detail[i].accounts.push(agg.accounts.get(a).to_string());
        }
    }

    let items = order
        .iter()
        .zip(detail)
        .enumerate()
        .map(|(i, (&(_, size, records), mut d))| {
            d.accounts.sort();
            Cluster {
                rank: i as u64 + 1,
                size: u64::from(size),
                records,
                ja4: rows(&d.ja4, &agg.ja4s),
                subnets: rows(&d.subnets, &agg.subnets),
                rules: rows(&d.rules, &agg.rules),
                accounts: d.accounts,
            }
        })
        .collect();
    Clusters {
        link: "accounts sharing a JA4 or a subnet; JA4s and subnets with more than \
               max_link_degree accounts (hubs) do not link"
            .into(),
        max_link_degree: max_link_degree as u64,
        total,
        accounts_in_clusters,
        hubs,
        items,
    }
}

#[derive(Default)]
struct Detail {
    ja4: HashMap<u32, u64>,
    subnets: HashMap<u32, u64>,
    rules: HashMap<u32, u64>,
    accounts: Vec<String>,
}

fn rows(counts: &HashMap<u32, u64>, names: &Interner) -> Vec<CountRow> {
    let mut v: Vec<CountRow> = counts
        .iter()
        .map(|(&k, &n)| CountRow {
            value: names.get(k).to_string(),
            records: n,
        })
        .collect();
    sort_counts(&mut v);
    v.truncate(PER_CLUSTER);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_find_merges_and_sizes() {
        let mut uf = UnionFind::new(6);
        uf.union(0, 1);
        uf.union(2, 3);
        uf.union(1, 3);
        assert_eq!(uf.size_of(0), 4);
        assert_eq!(uf.find(0), uf.find(2));
        assert_eq!(uf.size_of(4), 1);
        assert_ne!(uf.find(4), uf.find(5));
    }
}
