using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled.Grammars;

/// <summary>
/// The bytes each token of a vocabulary stands for, and a trie of them, built once per tokenizer and shared by every
/// grammar and generation that uses it. SentencePiece pieces: "▁" is a space, <c>&lt;0xAB&gt;</c> is that byte;
/// byte-level BPE: GPT-2's byte ↔ character map, added tokens as their UTF-8 text. Control and special tokens (BOS, EOS,
/// &lt;unk&gt;, a byte-level vocabulary's special added tokens) have no bytes: a grammar never allows them as text.
/// </summary>
internal sealed class TokenVocabulary
{
    private static readonly ConditionalWeakTable<Tokenizer, TokenVocabulary> Cache = new();

    private TokenVocabulary(byte[][] tokens)
    {
        Count = tokens.Length;
        TokenBytes = tokens;
        BuildTrie(tokens);
    }

    /// <summary>Ids 0 … Count-1 are the tokenizer's; a model's vocabulary may be larger (those ids have no bytes).</summary>
    public int Count { get; }

    /// <summary>Per id: its bytes (empty: never text).</summary>
    public byte[][] TokenBytes { get; }

    // The trie in preorder: node 0 is the root (no byte). Node i has the byte NodeByte[i] at depth NodeDepth[i]; its
    // subtree is i … NodeEnd[i]-1; the tokens spelled exactly by the path to it are
    // NodeTokens[NodeTokenStart[i] .. NodeTokenStart[i+1]].
    public byte[] NodeByte { get; private set; } = [];
    public int[] NodeDepth { get; private set; } = [];
    public int[] NodeEnd { get; private set; } = [];
    public int[] NodeTokenStart { get; private set; } = [];
    public int[] NodeTokens { get; private set; } = [];
    public int MaxDepth { get; private set; }

    public static TokenVocabulary For(Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return Cache.GetValue(tokenizer, static t => new TokenVocabulary(ReadTokens(t)));
    }

    /// <summary>For tests and custom vocabularies: the bytes of each id.</summary>
    internal static TokenVocabulary FromBytes(byte[][] tokens) => new(tokens);

    private static byte[][] ReadTokens(Tokenizer tokenizer)
    {
        switch (tokenizer)
        {
            case ByteLevelBpeTokenizer byteLevel:
            {
                ByteLevelBpeDefinition definition = byteLevel.Definition;
                string[] tokens = definition.Tokens;
                var isAdded = new bool[tokens.Length];
                foreach (ByteLevelAddedToken added in definition.AddedTokens)
                    isAdded[added.Id] = true;
                (byte[] bytes, int[] starts) = ByteLevelEncoding.DecodeAll(tokens, isAdded);
                var result = new byte[tokens.Length][];
                for (int id = 0; id < tokens.Length; id++)
                {
                    result[id] = byteLevel.IsSpecialToken(id) || tokens[id] is null
                        ? []
                        : bytes.AsSpan(starts[id], starts[id + 1] - starts[id]).ToArray();
                }
                return result;
            }
            case SentencePieceTokenizer sentencePiece:
            {
                int count = 0;
                foreach (KeyValuePair<string, int> piece in sentencePiece.Vocabulary)
                    count = Math.Max(count, piece.Value + 1);
                var result = new byte[count][];
                for (int id = 0; id < count; id++)
                    result[id] = [];
                var control = new HashSet<int> { sentencePiece.BeginningOfSentenceId, sentencePiece.EndOfSentenceId, sentencePiece.UnknownId };
                if (sentencePiece.SpecialTokens is { } specials)
                {
                    foreach (KeyValuePair<string, int> special in specials)
                        control.Add(special.Value);
                }
                foreach ((string piece, int id) in sentencePiece.Vocabulary)
                {
                    if (control.Contains(id))
                        continue;
                    if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                        && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte b))
                        result[id] = [b];
                    else
                        result[id] = Encoding.UTF8.GetBytes(piece.Replace('\u2581', ' '));
                }
                return result;
            }
            default:
            {
                // Any other tokenizer: each id decoded alone; ids that do not decode to whole characters are left out.
                var result = new List<byte[]>();
                for (int id = 0; ; id++)
                {
                    string? text;
                    try
                    {
                        text = tokenizer.Decode([id]);
                    }
                    catch (Exception e) when (e is ArgumentException or InvalidOperationException or KeyNotFoundException or IndexOutOfRangeException)
                    {
                        break;
                    }
                    if (text is null || id > 1 << 20)
                        break;
                    result.Add(text.Contains('\uFFFD', StringComparison.Ordinal) ? [] : Encoding.UTF8.GetBytes(text));
                }
                return [.. result];
            }
        }
    }

    private void BuildTrie(byte[][] tokens)
    {
        // Sort ids by their bytes; then preorder is the sorted order, with a node for every distinct prefix.
        var ids = new List<int>(tokens.Length);
        for (int id = 0; id < tokens.Length; id++)
        {
            if (tokens[id].Length > 0)
                ids.Add(id);
        }
        ids.Sort((a, b) =>
        {
            int c = tokens[a].AsSpan().SequenceCompareTo(tokens[b]);
            return c != 0 ? c : a.CompareTo(b);
        });
        var nodeByte = new List<byte> { 0 };
        var nodeDepth = new List<int> { 0 };
        var nodeTokenStart = new List<int> { 0 };
        var nodeTokens = new List<int>();
        // The path of nodes to the last inserted token.
        var path = new List<int> { 0 };
        byte[] previous = [];
        foreach (int id in ids)
        {
            byte[] bytes = tokens[id];
            int common = 0;
            while (common < previous.Length && common < bytes.Length && previous[common] == bytes[common])
                common++;
            path.RemoveRange(common + 1, path.Count - common - 1);
            for (int d = common; d < bytes.Length; d++)
            {
                nodeByte.Add(bytes[d]);
                nodeDepth.Add(d + 1);
                nodeTokenStart.Add(nodeTokens.Count);
                path.Add(nodeByte.Count - 1);
            }
            // Tokens of a node are contiguous: a token ends at the last node created or revisited.
            nodeTokens.Add(id);
            previous = bytes;
            MaxDepth = Math.Max(MaxDepth, bytes.Length);
        }
        int n = nodeByte.Count;
        NodeByte = [.. nodeByte];
        NodeDepth = [.. nodeDepth];
        nodeTokenStart.Add(nodeTokens.Count);
        NodeTokens = [.. nodeTokens];
        // Token lists: a node's tokens were appended right after it was created (equal byte strings are adjacent in the
        // sort), so NodeTokenStart[i+1] ends node i's list.
        NodeTokenStart = [.. nodeTokenStart];
        var end = new int[n];
        var stack = new Stack<int>();
        for (int i = 0; i < n; i++)
        {
            while (stack.Count > 0 && NodeDepth[stack.Peek()] >= NodeDepth[i])
                end[stack.Pop()] = i;
            stack.Push(i);
        }
        while (stack.Count > 0)
            end[stack.Pop()] = n;
        NodeEnd = end;
    }
}
