using System;
using System.Collections.Generic;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// Tokenizes a rendered chat prompt: the template's special-token strings become their single ids
/// (when the vocabulary has them), the text between them is encoded piece by piece without BOS/EOS,
/// as transformers does for added tokens.
/// </summary>
internal sealed class ChatPromptEncoder
{
    private readonly Tokenizer _tokenizer;
    // Special strings the vocabulary has, longest first so that a longer marker wins at a position.
    private readonly (string Text, int Id)[] _specials;

    public ChatPromptEncoder(Tokenizer tokenizer, IEnumerable<string> specialTokens)
    {
        _tokenizer = tokenizer;
        var specials = new List<(string, int)>();
        foreach (string text in specialTokens)
        {
            if (string.IsNullOrEmpty(text) || specials.Exists(s => s.Item1 == text))
                continue;
            if (TryGetSpecialId(tokenizer, text, out int id))
                specials.Add((text, id));
        }
        specials.Sort((a, b) => b.Item1.Length.CompareTo(a.Item1.Length));
        _specials = [.. specials];
    }

    /// <summary>The id of <paramref name="text"/> when it is one special token of the vocabulary.</summary>
    public static bool TryGetSpecialId(Tokenizer tokenizer, string text, out int id)
    {
        if (tokenizer is ByteLevelBpeTokenizer byteLevel)
        {
            // Added tokens (<|eot_id|>, <|im_end|>) by their text; encoding would put BOS before them.
            if (byteLevel.AddedTokens.TryGetValue(text, out id))
                return true;
            IReadOnlyList<int> pieces = byteLevel.EncodeToIds(text, addSpecialTokens: false);
            id = pieces.Count == 1 ? pieces[0] : -1;
            return pieces.Count == 1;
        }
        if (tokenizer is SentencePieceTokenizer sentencePiece)
        {
            if (sentencePiece.SpecialTokens is { } specials && specials.TryGetValue(text, out id))
                return true;
            // Control pieces (<s>, </s>, ...) are in the vocabulary but never produced by encoding text.
            return sentencePiece.Vocabulary.TryGetValue(text, out id);
        }
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(text);
        if (ids.Count == 1)
        {
            id = ids[0];
            return true;
        }
        id = -1;
        return false;
    }

    /// <summary>The ids of <paramref name="text"/> appended to <paramref name="ids"/>.</summary>
    public void Encode(string text, List<int> ids)
    {
        int start = 0, position = 0;
        while (position < text.Length)
        {
            int id = MatchSpecial(text, position, out int length);
            if (id < 0)
            {
                position++;
                continue;
            }
            EncodeText(text.AsSpan(start, position - start), ids);
            ids.Add(id);
            position += length;
            start = position;
        }
        EncodeText(text.AsSpan(start), ids);
    }

    private int MatchSpecial(string text, int position, out int length)
    {
        foreach ((string special, int id) in _specials)
        {
            if (string.CompareOrdinal(text, position, special, 0, special.Length) == 0)
            {
                length = special.Length;
                return id;
            }
        }
        length = 0;
        return -1;
    }

    private void EncodeText(ReadOnlySpan<char> text, List<int> ids)
    {
        if (text.IsEmpty)
            return;
        // Without BOS/EOS, as transformers' apply_chat_template(tokenize=True) encodes the rendered prompt.
        IReadOnlyList<int> piece = LlamaTokenizers.EncodeWithoutSpecialTokens(_tokenizer, text);
        for (int i = 0; i < piece.Count; i++)
            ids.Add(piece[i]);
    }
}
