using System;
using System.Collections.Generic;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// Turns token ids arriving one at a time into text chunks, for printing text as it is generated.
/// </summary>
/// <remarks>
/// Decoding ids one by one is wrong: SentencePiece drops the leading space ("▁") of the first text
/// piece it decodes, and a character encoded as several byte tokens (&lt;0xE4&gt;&lt;0xBD&gt;&lt;0xA0&gt;)
/// decodes to U+FFFD until its last byte arrives. So this decodes a short window of recent ids twice —
/// up to the text already emitted, and with the new ids — and emits the difference, holding back text
/// that ends in U+FFFD until the character completes (or <see cref="Flush"/>). The window restarts
/// after each emitted chunk, so the work per id stays constant instead of growing with the text (the
/// scheme of Hugging Face text-generation-inference).
/// <para>
/// Byte-level BPE tokenizers (Llama 3, Qwen, SmolLM2) spell every byte, so a token can end inside a
/// character — an emoji is four bytes, often in two or three tokens: its text ends in U+FFFD until the
/// token with the last byte arrives, and is held back until then. Nothing is dropped at the start.
/// </para>
/// <para>
/// SentencePiece drops that space from the first text piece even after byte tokens, where it belongs
/// in the text ("🎂 für" would come out "🎂für" from a window starting at the emoji's bytes). So with a
/// SentencePiece tokenizer every window starts with the lone "▁" piece: it decodes to nothing and takes
/// the drop. Only directly after BOS is the space dropped, as llama2.c prints it.
/// </para>
/// </remarks>
public sealed class StreamingDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly Func<IEnumerable<int>, string> _decode;
    // The "▁" piece that starts every window, or -1 when the tokenizer is not SentencePiece.
    private readonly int _anchor;
    // [_anchor] + the window: ids from the start of the last emitted chunk on.
    private readonly List<int> _ids = [];
    private readonly int _windowStart;
    // _ids[.._readOffset] decode to _emittedText, which is already out; the ids after it are pending.
    private int _readOffset;
    private string _emittedText;
    // The next id directly follows BOS: its leading space is dropped.
    private bool _afterBos;

    /// <summary>Creates a decoder for text that follows <paramref name="context"/>.</summary>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="context">
    /// Ids whose text the reader already has, such as the prompt with its BOS. When it is empty or ends
    /// with BOS, the first piece loses its leading space (" Once" → "Once"), as llama2.c prints it.
    /// </param>
    public StreamingDecoder(Tokenizer tokenizer, ReadOnlySpan<int> context)
        : this(tokenizer, context, exactText: false)
    {
    }

    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="context">Ids whose text the reader already has.</param>
    /// <param name="exactText">
    /// Decode the tokens' bytes as they are, without a byte-level tokenizer's clean-up of spaces before punctuation: the
    /// text a grammar matched must come out unchanged.
    /// </param>
    internal StreamingDecoder(Tokenizer tokenizer, ReadOnlySpan<int> context, bool exactText)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _decode = exactText && tokenizer is ByteLevelBpeTokenizer byteLevel ? byteLevel.DecodeExact : tokenizer.Decode;
        _anchor = -1;
        if (tokenizer is SentencePieceTokenizer sentencePiece)
        {
            if (sentencePiece.Vocabulary.TryGetValue("\u2581", out int space))
                _anchor = space;
            _afterBos = context.IsEmpty || context[^1] == sentencePiece.BeginningOfSentenceId;
        }
        if (_anchor >= 0)
            _ids.Add(_anchor);
        _windowStart = _ids.Count;
        // Other tokenizers may join pieces depending on what precedes them: keep the last context id.
        if (_anchor < 0 && !context.IsEmpty)
            _ids.Add(context[^1]);
        _readOffset = _ids.Count;
        _emittedText = _decode(_ids);
    }

    /// <summary>Adds the next id and returns the text it completes; empty while a character is incomplete.</summary>
    public string Append(int id)
    {
        bool dropSpace = _afterBos && StartsWithSpacePiece(id);
        _afterBos = false;

        _ids.Add(id);
        string text = _decode(_ids);
        if (text.Length <= _emittedText.Length || text[^1] == '\uFFFD')
            return string.Empty;

        string chunk = text[_emittedText.Length..];
        Restart();
        return dropSpace && chunk[0] == ' ' ? chunk[1..] : chunk;
    }

    /// <summary>
    /// Returns the text still held back, as it decodes now (bytes that never completed a character
    /// come out as U+FFFD); call it after the last id.
    /// </summary>
    public string Flush()
    {
        string text = _decode(_ids);
        if (text.Length <= _emittedText.Length)
            return string.Empty;
        string chunk = text[_emittedText.Length..];
        Restart();
        return chunk;
    }

    /// <summary>Starts the next window at the ids just emitted.</summary>
    private void Restart()
    {
        _ids.RemoveRange(_windowStart, _readOffset - _windowStart);
        _readOffset = _ids.Count;
        _emittedText = _decode(_ids);
    }

    /// <summary>Whether the piece of <paramref name="id"/> is text starting with "▁" (not a byte token for a space).</summary>
    private bool StartsWithSpacePiece(int id)
    {
        // Decoded alone, such a piece loses its space; after the anchor, it keeps it.
        return _anchor >= 0 && _tokenizer.Decode([_anchor, id]) != _tokenizer.Decode([id]);
    }
}
