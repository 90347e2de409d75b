using System;
using System.Collections.Generic;
using System.Text;

namespace Llama.Compiled.Grammars;

/// <summary>
/// A grammar compiled to bytes: rules of alternatives, each alternative a run of elements ending with
/// <see cref="End"/>; an element is a terminal (a set of bytes) or a reference to a rule. Code-point classes become
/// rules whose alternatives are their UTF-8 encodings, so matching never decodes UTF-8 and a token may end inside a
/// character. Repetitions, groups and options are rules too (llama.cpp's rewriting: <c>x*</c> is <c>r ::= x r | ""</c>,
/// <c>x{0,n}</c> nests). Immutable.
/// </summary>
internal sealed class GrammarProgram
{
    public const byte End = 0, Terminal = 1, RuleRef = 2;

    public GrammarProgram(byte[] kinds, int[] values, ulong[] byteSets, int[][] ruleAlternatives, string[] ruleNames, int root)
    {
        Kinds = kinds;
        Values = values;
        ByteSets = byteSets;
        RuleAlternatives = ruleAlternatives;
        RuleNames = ruleNames;
        Root = root;
    }

    /// <summary>Per element: <see cref="End"/>, <see cref="Terminal"/> or <see cref="RuleRef"/>.</summary>
    public byte[] Kinds { get; }

    /// <summary>Per element: the byte set's index (terminal) or the rule's (reference).</summary>
    public int[] Values { get; }

    /// <summary>Four words (256 bits) per byte set.</summary>
    public ulong[] ByteSets { get; }

    /// <summary>Per rule: where each alternative starts in <see cref="Kinds"/>.</summary>
    public int[][] RuleAlternatives { get; }

    public string[] RuleNames { get; }

    public int Root { get; }

    public bool Matches(int position, byte b) => (ByteSets[Values[position] * 4 + (b >> 6)] >> (b & 63) & 1) != 0;
}

/// <summary>Lowers parsed GBNF rules to a <see cref="GrammarProgram"/> and checks them (defined, not left-recursive).</summary>
internal sealed class GrammarCompiler
{
    private readonly string _text;
    private readonly List<byte> _kinds = [];
    private readonly List<int> _values = [];
    private readonly List<ulong> _byteSets = [];
    private readonly Dictionary<(ulong, ulong, ulong, ulong), int> _byteSetIndex = [];
    private readonly List<List<List<(byte Kind, int Value)>>?> _rules = [];
    private readonly List<string> _names = [];
    private readonly List<string> _owners = [];     // the user's rule each rule comes from
    private readonly List<int> _ruleOffsets = [];
    private readonly Dictionary<string, int> _ruleIds = new(StringComparer.Ordinal);
    private readonly Dictionary<CodePointSet, int> _classRules = [];
    private readonly Dictionary<string, int> _firstUse = new(StringComparer.Ordinal);

    private GrammarCompiler(string text) => _text = text;

    public static GrammarProgram Compile(string text, string rootName)
    {
        List<GbnfRule> rules = GbnfParser.Parse(text);
        var compiler = new GrammarCompiler(text);
        return compiler.Build(rules, rootName);
    }

    private GrammarProgram Build(List<GbnfRule> rules, string rootName)
    {
        var defined = new HashSet<string>(StringComparer.Ordinal);
        foreach (GbnfRule rule in rules)
        {
            if (!defined.Add(rule.Name))
                throw GbnfParser.ErrorAt(_text, $"rule '{rule.Name}' is defined twice", rule.Offset);
            int id = RuleId(rule.Name);
            _ruleOffsets[id] = rule.Offset;
        }
        foreach (GbnfRule rule in rules)
            _rules[_ruleIds[rule.Name]] = Alternatives(rule.Body, rule.Name);
        foreach ((string name, int id) in _ruleIds)
        {
            if (_rules[id] is null)
                throw GbnfParser.ErrorAt(_text, $"rule '{name}' is used but not defined", _firstUse.GetValueOrDefault(name));
        }
        if (!_ruleIds.TryGetValue(rootName, out int root) || !defined.Contains(rootName))
            throw new GrammarFormatException($"Invalid GBNF grammar: there is no '{rootName}' rule (the start of the grammar).");

        CheckLeftRecursion();

        // Flatten: every alternative's elements, then End.
        var alternatives = new int[_rules.Count][];
        for (int r = 0; r < _rules.Count; r++)
        {
            var alts = _rules[r]!;
            alternatives[r] = new int[alts.Count];
            for (int a = 0; a < alts.Count; a++)
            {
                alternatives[r][a] = _kinds.Count;
                foreach ((byte kind, int value) in alts[a])
                {
                    _kinds.Add(kind);
                    _values.Add(value);
                }
                _kinds.Add(GrammarProgram.End);
                _values.Add(0);
            }
        }
        // A trailing End so that "the element after" is always in range.
        _kinds.Add(GrammarProgram.End);
        _values.Add(0);
        return new GrammarProgram([.. _kinds], [.. _values], [.. _byteSets], alternatives, [.. _names], root);
    }

    private int RuleId(string name)
    {
        if (!_ruleIds.TryGetValue(name, out int id))
        {
            id = NewRule(name, name);
            _ruleIds[name] = id;
        }
        return id;
    }

    private int NewRule(string name, string owner)
    {
        _rules.Add(null);
        _names.Add(name);
        _owners.Add(owner);
        _ruleOffsets.Add(0);
        return _rules.Count - 1;
    }

    private int Synthesize(string baseName, List<List<(byte, int)>> alternatives)
    {
        int id = NewRule($"{baseName}_{_rules.Count}", baseName);
        _rules[id] = alternatives;
        return id;
    }

    private List<List<(byte, int)>> Alternatives(GbnfNode node, string ruleName)
    {
        var result = new List<List<(byte, int)>>();
        if (node is GbnfAlternatives alternatives)
        {
            foreach (GbnfNode item in alternatives.Items)
                result.Add(Sequence(item, ruleName));
        }
        else
        {
            result.Add(Sequence(node, ruleName));
        }
        return result;
    }

    private List<(byte, int)> Sequence(GbnfNode node, string ruleName)
    {
        var elements = new List<(byte, int)>();
        Append(node, ruleName, elements);
        return elements;
    }

    /// <summary>Appends the elements that match <paramref name="node"/>.</summary>
    private void Append(GbnfNode node, string ruleName, List<(byte, int)> elements)
    {
        switch (node)
        {
            case GbnfSequence sequence:
                foreach (GbnfNode item in sequence.Items)
                    Append(item, ruleName, elements);
                break;
            case GbnfAlternatives:
                elements.Add((GrammarProgram.RuleRef, Synthesize(ruleName, Alternatives(node, ruleName))));
                break;
            case GbnfRuleRef reference:
                _firstUse.TryAdd(reference.Name, reference.Offset);
                elements.Add((GrammarProgram.RuleRef, RuleId(reference.Name)));
                break;
            case GbnfCharClass charClass:
                AppendClass(charClass.Set, ruleName, elements);
                break;
            case GbnfRepeat repeat:
                AppendRepeat(repeat, ruleName, elements);
                break;
            default:
                throw new InvalidOperationException(node.GetType().Name);
        }
    }

    private void AppendRepeat(GbnfRepeat repeat, string ruleName, List<(byte, int)> elements)
    {
        // One element stands for the item: itself when it is one element, else a rule of it.
        List<(byte, int)> item = Sequence(repeat.Item, ruleName);
        if (item.Count != 1)
            item = [(GrammarProgram.RuleRef, Synthesize(ruleName, [item]))];
        for (int i = 0; i < repeat.Min; i++)
            elements.AddRange(item);
        if (repeat.Max < 0)
        {
            // r ::= item r | ""
            int star = NewRule($"{ruleName}_{_rules.Count}", ruleName);
            _rules[star] = [[.. item, (GrammarProgram.RuleRef, star)], []];
            elements.Add((GrammarProgram.RuleRef, star));
        }
        else if (repeat.Max > repeat.Min)
        {
            // o1 ::= item | "";  ok ::= item o(k-1) | ""
            int previous = -1;
            for (int k = 1; k <= repeat.Max - repeat.Min; k++)
            {
                List<(byte, int)> first = [.. item];
                if (previous >= 0)
                    first.Add((GrammarProgram.RuleRef, previous));
                previous = Synthesize(ruleName, [first, []]);
            }
            elements.Add((GrammarProgram.RuleRef, previous));
        }
    }

    private void AppendClass(CodePointSet set, string ruleName, List<(byte, int)> elements)
    {
        List<(byte Lo, byte Hi)[]> sequences = set.ToUtf8Sequences();
        if (sequences.Count == 0)
        {
            elements.Add((GrammarProgram.Terminal, ByteSet([])));
            return;
        }
        bool ascii = sequences.TrueForAll(s => s.Length == 1);
        if (ascii)
        {
            var ranges = new List<(byte, byte)>();
            foreach (var s in sequences)
                ranges.Add(s[0]);
            elements.Add((GrammarProgram.Terminal, ByteSet(ranges)));
            return;
        }
        if (sequences.Count == 1)
        {
            foreach ((byte lo, byte hi) in sequences[0])
                elements.Add((GrammarProgram.Terminal, ByteSet([(lo, hi)])));
            return;
        }
        if (!_classRules.TryGetValue(set, out int rule))
        {
            // One alternative for the one-byte part, one per multi-byte sequence.
            var alternatives = new List<List<(byte, int)>>();
            var single = new List<(byte, byte)>();
            foreach (var s in sequences)
            {
                if (s.Length == 1)
                {
                    single.Add(s[0]);
                    continue;
                }
                var alternative = new List<(byte, int)>();
                foreach ((byte lo, byte hi) in s)
                    alternative.Add((GrammarProgram.Terminal, ByteSet([(lo, hi)])));
                alternatives.Add(alternative);
            }
            if (single.Count > 0)
                alternatives.Insert(0, [(GrammarProgram.Terminal, ByteSet(single))]);
            rule = NewRule($"{ruleName}_char{_rules.Count}", ruleName);
            _rules[rule] = alternatives;
            _classRules[set] = rule;
        }
        elements.Add((GrammarProgram.RuleRef, rule));
    }

    private int ByteSet(List<(byte Lo, byte Hi)> ranges)
    {
        Span<ulong> words = stackalloc ulong[4];
        foreach ((byte lo, byte hi) in ranges)
        {
            for (int b = lo; b <= hi; b++)
                words[b >> 6] |= 1UL << (b & 63);
        }
        var key = (words[0], words[1], words[2], words[3]);
        if (!_byteSetIndex.TryGetValue(key, out int index))
        {
            index = _byteSets.Count / 4;
            _byteSets.AddRange(words);
            _byteSetIndex[key] = index;
        }
        return index;
    }

    /// <summary>
    /// A rule that can derive itself before matching a byte (directly, or after rules that match the empty string) would
    /// make the matcher loop, as in llama.cpp, which rejects such grammars too.
    /// </summary>
    private void CheckLeftRecursion()
    {
        int n = _rules.Count;
        var nullable = new bool[n];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < n; r++)
            {
                if (nullable[r])
                    continue;
                foreach (var alternative in _rules[r]!)
                {
                    if (alternative.TrueForAll(e => e.Kind == GrammarProgram.RuleRef && nullable[e.Value]))
                    {
                        nullable[r] = changed = true;
                        break;
                    }
                }
            }
        }
        // Rules that can come first in each rule.
        var leftmost = new List<int>[n];
        for (int r = 0; r < n; r++)
        {
            leftmost[r] = [];
            foreach (var alternative in _rules[r]!)
            {
                foreach ((byte kind, int value) in alternative)
                {
                    if (kind != GrammarProgram.RuleRef)
                        break;
                    leftmost[r].Add(value);
                    if (!nullable[value])
                        break;
                }
            }
        }
        var state = new byte[n]; // 0 new, 1 on the path, 2 done
        var path = new List<int>();
        for (int r = 0; r < n; r++)
            Visit(r);

        void Visit(int r)
        {
            if (state[r] == 2)
                return;
            if (state[r] == 1)
            {
                int from = path.IndexOf(r);
                var cycle = new StringBuilder();
                for (int i = from; i < path.Count; i++)
                    cycle.Append(UserName(path[i])).Append(" → ");
                cycle.Append(UserName(r));
                int named = path.Count > from ? path[from] : r;
                throw GbnfParser.ErrorAt(_text, $"rule '{UserName(named)}' is left-recursive ({cycle}): it can reach itself without matching a character", _ruleOffsets[OwnerRule(named)]);
            }
            state[r] = 1;
            path.Add(r);
            foreach (int next in leftmost[r])
                Visit(next);
            path.RemoveAt(path.Count - 1);
            state[r] = 2;
        }
    }

    // Synthesized rules (groups, repetitions, classes) are named after the rule they are in: errors name that rule.
    private string UserName(int rule) => _owners[rule];

    private int OwnerRule(int rule) => _ruleIds.TryGetValue(_owners[rule], out int id) ? id : rule;
}
