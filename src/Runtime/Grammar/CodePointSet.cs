using System;
using System.Collections.Generic;
using System.Text;

namespace Llama.Compiled.Grammars;

/// <summary>
/// An immutable set of Unicode scalar values (code points without the surrogates D800–DFFF, which UTF-8 cannot encode),
/// as sorted, disjoint, non-adjacent inclusive ranges.
/// </summary>
internal sealed class CodePointSet : IEquatable<CodePointSet>
{
    public const int MaxCodePoint = 0x10FFFF;

    private readonly (int Lo, int Hi)[] _ranges;

    private CodePointSet((int, int)[] normalized) => _ranges = normalized;

    public static CodePointSet Empty { get; } = new([]);

    /// <summary>Every scalar value (GBNF's <c>.</c>).</summary>
    public static CodePointSet Any { get; } = FromRanges([(0, MaxCodePoint)]);

    public ReadOnlySpan<(int Lo, int Hi)> Ranges => _ranges;

    public bool IsEmpty => _ranges.Length == 0;

    public static CodePointSet Single(int codePoint, Func<Exception> surrogate)
    {
        if (codePoint is >= 0xD800 and <= 0xDFFF)
            throw surrogate();
        return new([(codePoint, codePoint)]);
    }

    public static CodePointSet Of(params int[] codePoints)
    {
        var ranges = new List<(int, int)>();
        foreach (int c in codePoints)
            ranges.Add((c, c));
        return FromRanges(ranges);
    }

    /// <summary>The union of the ranges, without surrogates.</summary>
    public static CodePointSet FromRanges(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var list = new List<(int Lo, int Hi)>();
        foreach ((int lo, int hi) in ranges)
        {
            if (lo > hi)
                continue;
            // Cut out the surrogates.
            if (lo < 0xD800 && hi >= 0xD800)
            {
                list.Add((lo, 0xD7FF));
                if (hi > 0xDFFF)
                    list.Add((0xE000, hi));
            }
            else if (lo >= 0xD800 && lo <= 0xDFFF)
            {
                if (hi > 0xDFFF)
                    list.Add((0xE000, hi));
            }
            else
            {
                list.Add((lo, hi));
            }
        }
        list.Sort();
        var merged = new List<(int, int)>();
        foreach ((int lo, int hi) in list)
        {
            if (merged.Count > 0 && lo <= merged[^1].Item2 + 1)
                merged[^1] = (merged[^1].Item1, Math.Max(merged[^1].Item2, hi));
            else
                merged.Add((lo, hi));
        }
        return new([.. merged]);
    }

    public CodePointSet Complement()
    {
        var result = new List<(int, int)>();
        int next = 0;
        foreach ((int lo, int hi) in _ranges)
        {
            if (lo > next)
                result.Add((next, lo - 1));
            next = hi + 1;
        }
        if (next <= MaxCodePoint)
            result.Add((next, MaxCodePoint));
        return FromRanges(result);
    }

    public CodePointSet Union(CodePointSet other)
    {
        var all = new List<(int, int)>(_ranges);
        all.AddRange(other._ranges);
        return FromRanges(all);
    }

    public CodePointSet Intersect(CodePointSet other) => Complement().Union(other.Complement()).Complement();

    public CodePointSet Except(CodePointSet other) => Intersect(other.Complement());

    public bool Contains(int codePoint)
    {
        foreach ((int lo, int hi) in _ranges)
        {
            if (codePoint >= lo && codePoint <= hi)
                return true;
        }
        return false;
    }

    /// <summary>
    /// The UTF-8 encodings of the set as sequences of byte ranges (RE2's construction): every sequence has one range per
    /// byte, and a code point is in the set exactly when its encoding matches one sequence.
    /// </summary>
    public List<(byte Lo, byte Hi)[]> ToUtf8Sequences()
    {
        var output = new List<(byte, byte)[]>();
        foreach ((int lo, int hi) in _ranges)
            Split(lo, hi, output);
        return output;
    }

    private static readonly int[] LengthMax = [0x7F, 0x7FF, 0xFFFF, MaxCodePoint];

    private static void Split(int lo, int hi, List<(byte, byte)[]> output)
    {
        // Into ranges of one encoded length.
        for (int i = 0; i < 3; i++)
        {
            int max = LengthMax[i];
            if (lo <= max && hi > max)
            {
                Split(lo, max, output);
                Split(max + 1, hi, output);
                return;
            }
        }
        // Into ranges where all but a suffix of continuation bytes agree.
        for (int n = 1; n < 4; n++)
        {
            int m = (1 << (6 * n)) - 1;
            if ((lo & ~m) != (hi & ~m))
            {
                if ((lo & m) != 0)
                {
                    Split(lo, lo | m, output);
                    Split((lo | m) + 1, hi, output);
                    return;
                }
                if ((hi & m) != m)
                {
                    Split(lo, (hi & ~m) - 1, output);
                    Split(hi & ~m, hi, output);
                    return;
                }
            }
        }
        Span<byte> a = stackalloc byte[4], b = stackalloc byte[4];
        int length = Encode(lo, a);
        Encode(hi, b);
        var sequence = new (byte, byte)[length];
        for (int i = 0; i < length; i++)
            sequence[i] = (a[i], b[i]);
        output.Add(sequence);
    }

    private static int Encode(int codePoint, Span<byte> bytes) => new Rune(codePoint).EncodeToUtf8(bytes);

    public bool Equals(CodePointSet? other) => other is not null && _ranges.AsSpan().SequenceEqual(other._ranges);

    public override bool Equals(object? obj) => Equals(obj as CodePointSet);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var range in _ranges)
            hash.Add(range);
        return hash.ToHashCode();
    }
}
